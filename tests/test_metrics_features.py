"""Feature extraction, feature cache, LPIPS and CLIP score through the real loading paths with random
weights (no downloads): torch-fidelity's `feature_extractor_weights_path`, LPIPS backbone/heads files, open_clip
`pretrained=<file>` with a tiny config."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch_fidelity.datasets import ImagesPathDataset
from torch_fidelity.utils import get_featuresdict_from_dataset

from ldm_lab import weights
from ldm_lab.metrics import cache
from ldm_lab.metrics.fidelity_features import (
    build_extractor,
    extract_features,
    feature_protocol,
    resize_clean,
)
from ldm_lab.metrics.result import MetricUnavailable
from ldm_lab.metrics.stand_ins import save_random_inception_weights, save_random_torchvision_weights

from .numerics import assert_close_ulps


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def inception(weights_dir):
    return build_extractor("inception", save_random_inception_weights(weights_dir / "inception.pth"))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]


# ---- feature extraction --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf1_features(inception, images):
    return extract_features(images[:3], inception, batch_size=2)


def test_random_inception_loads_through_weights_path_with_usable_feature_scale(
    inception, images, tf1_features
):
    feats = tf1_features
    assert feats.shape == (3, 2048) and feats.dtype == np.float32
    assert 1e-3 < feats.std() < 1e3  # scaled init: not the ~1e-8 of PyTorch's default init
    # Batch independent: batches of 2 + 1 vs one of 3 are different oneDNN/MKL calls (kernels, blocking and
    # thread splits are chosen per batch size and CPU), so they agree to float32 rounding, not bitwise.
    # Bound: 32 float32 ULPs of max |feature| (~1.4, so ~4e-6). Measured: 0 on an Intel Xeon (AVX-512)
    # at 1-16 threads and under MKL_CBWR / ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY variants; another
    # float32 path (channels_last) is 6 ULPs away, float64 8; another image's features ~5e5 ULPs.
    assert_close_ulps(extract_features(images[:3], inception, batch_size=3), feats, 32)
    assert "inception-v3-compat:2048" in feature_protocol(inception, "tf1-bilinear")
    assert inception.weights_id.startswith("inception-fid@sha256:")


def test_clean_resize_mode_is_recorded_and_differs(inception, images, tf1_features):
    clean = extract_features(images[:2], inception, resize_mode="clean")
    assert clean.shape == (2, 2048) and not np.allclose(tf1_features[:2], clean)
    assert "resize=clean" in feature_protocol(inception, "clean")
    resized = resize_clean(images[0], 299)
    assert resized.shape == (299, 299, 3) and resized.dtype == np.uint8
    with pytest.raises(ValueError, match="resize_mode"):
        extract_features(images, inception, resize_mode="bilinear")


def test_batches_group_equal_shapes_and_flush_on_change():
    from ldm_lab.metrics.fidelity_features import _batches

    ims = [np.zeros((8, 8, 3), np.uint8)] * 3 + [np.zeros((6, 8, 3), np.uint8)] * 2
    shapes = [tuple(b.shape) for b in _batches(ims, 2, "tf1-bilinear", 299)]
    assert shapes == [(2, 3, 8, 8), (1, 3, 8, 8), (2, 3, 6, 8)]
    assert [tuple(b.shape) for b in _batches(ims, 4, "clean", 16)] == [(4, 3, 16, 16), (1, 3, 16, 16)]


def test_extraction_rejects_non_uint8_images(inception):
    with pytest.raises(ValueError, match="uint8"):
        extract_features([np.zeros((8, 8, 3), np.float32)], inception)


def test_vgg16_extractor_for_precision_recall(weights_dir, images):
    path = save_random_torchvision_weights("vgg16", weights_dir / "vgg16.pth")
    vgg = build_extractor("vgg16", path)
    path.unlink()  # 528 MB; the module holds the weights now
    feats = extract_features(images[:1], vgg)
    assert feats.shape == (1, 4096) and (feats >= 0).all() and feats.max() > 0  # fc2 after ReLU


# ---- feature cache -------------------------------------------------------------------------------


def _write_pngs(folder, images):
    folder.mkdir(exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(im).save(paths[-1])
    return paths


def test_reference_features_are_cached_and_reused(tmp_path, inception, images, monkeypatch):
    paths = _write_pngs(tmp_path / "ref", images[:2])
    first, status1 = cache.reference_features(paths, inception, cache_dir=tmp_path / "cache")
    calls = []
    monkeypatch.setattr(cache, "extract_features", lambda *a, **k: calls.append(1))
    second, status2 = cache.reference_features(paths, inception, cache_dir=tmp_path / "cache")
    assert (status1, status2) == (cache.CACHE_MISS, cache.CACHE_HIT) and not calls
    np.testing.assert_array_equal(first, second)
    # Parity of the whole I/O + feature stage with torch-fidelity's own pipeline on the same files.
    theirs = get_featuresdict_from_dataset(
        ImagesPathDataset([str(p) for p in paths]), inception.module, 2, False, True, False
    )["2048"]
    # bitwise: the same module on the same contiguous uint8 batch of 2 (torch-fidelity's DataLoader batch),
    # so the same float operations; only the I/O and batching around it are ours
    np.testing.assert_array_equal(first, theirs.numpy())


@pytest.mark.weights
def test_real_inception_weights_load_and_give_finite_features(images):
    if weights.find("inception-fid") is None:
        pytest.skip(f"needs {weights.target_path('inception-fid')} (ldm-lab weights fetch inception-fid)")
    feats = extract_features(images[:2], build_extractor("inception"))
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()


def test_corrupt_or_mismatching_cache_entries_are_rebuilt(tmp_path):
    key = cache.FeatureKey("fp", "extractor", "weights@sha256:00", "uint8,resize=tf1-bilinear")
    feats = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = cache.cache_path(tmp_path, key)
    path.write_bytes(b"not an npz file")
    out, status = cache.cached_features(tmp_path, key, lambda: feats)
    assert status.startswith(cache.CACHE_REBUILT) and "unreadable" in status
    assert cache.cached_features(tmp_path, key, lambda: pytest.fail("should hit"))[1] == cache.CACHE_HIT
    other = cache.FeatureKey("fp", "extractor", "weights@sha256:11", "uint8,resize=tf1-bilinear")
    cache.save_features(path, feats, other)  # an entry written for another key at this path
    assert "another key" in cache.cached_features(tmp_path, key, lambda: feats)[1]
    cache.save_features(path, np.full((3, 4), np.nan, np.float32), key)
    assert "invalid features" in cache.cached_features(tmp_path, key, lambda: feats)[1]
    np.testing.assert_array_equal(cache.load_features(path, key)[0], feats)


def test_run_features_round_trip(tmp_path):
    key = cache.FeatureKey("run", "ex", "w", "p")
    path = cache.save_features(cache.run_features_path(tmp_path, "inception"), np.ones((2, 3)), key)
    assert path.name == "features_generated_inception.npz"
    np.testing.assert_array_equal(cache.load_features(path, key)[0], np.ones((2, 3), np.float32))


def test_cache_key_covers_every_input():
    base = cache.FeatureKey("fp", "ex", "w", "p")
    variants = [
        cache.FeatureKey("fp2", "ex", "w", "p"),
        cache.FeatureKey("fp", "ex2", "w", "p"),
        cache.FeatureKey("fp", "ex", "w2", "p"),
        cache.FeatureKey("fp", "ex", "w", "p2"),
    ]
    assert len({base.digest(), *(v.digest() for v in variants)}) == 5


def test_fingerprint_changes_with_content(tmp_path, images):
    paths = _write_pngs(tmp_path / "a", images[:2])
    fp = cache.fingerprint_files(paths)
    Image.fromarray(images[3]).save(paths[1])
    assert cache.fingerprint_files(paths) != fp


# ---- LPIPS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alexnet_path(weights_dir):
    return save_random_torchvision_weights("alexnet", weights_dir / "alexnet.pth")


@pytest.fixture(scope="module")
def lpips_alex(alexnet_path):
    from ldm_lab.metrics.lpips_metric import build_lpips

    return build_lpips("alex", alexnet_path)


def test_lpips_per_sample_loads_backbone_file_and_matches_direct_call(lpips_alex, alexnet_path, images):
    from ldm_lab.metrics.lpips_metric import lpips_per_sample, to_lpips_input

    a, b = images[:3], [images[3], images[4], images[2]]
    values = lpips_per_sample(lpips_alex, a, b, batch_size=2)
    assert values.shape == (3,) and values[2] == 0.0 and (values[:2] > 0).all()
    with torch.no_grad():
        direct = lpips_alex.module(to_lpips_input(a), to_lpips_input(b)).flatten().double().numpy()
    # batches of 2 + 1 vs one of 3: rounding apart (float32 vs float64 LPIPS: < 1e-7 relative, 10x margin)
    np.testing.assert_allclose(values, direct, rtol=1e-6)
    backbone = torch.load(alexnet_path, weights_only=True)
    torch.testing.assert_close(lpips_alex.module.net.slice5[0].weight, backbone["features.10.weight"])
    heads = torch.load(weights.resolve("lpips-alex-lin"), weights_only=True, map_location="cpu")
    torch.testing.assert_close(lpips_alex.module.lin0.model[1].weight, heads["lin0.model.1.weight"])
    assert ":alex:" in lpips_alex.protocol and "[-1,1]" in lpips_alex.protocol


def test_lpips_inputs_are_mapped_to_minus_one_one():
    from ldm_lab.metrics.lpips_metric import to_lpips_input

    x = to_lpips_input([np.array([[[0, 255, 128]]], np.uint8)])
    torch.testing.assert_close(x.flatten(), torch.tensor([-1.0, 1.0, 128 / 127.5 - 1]))


def test_lpips_hole_bbox_and_too_small_crops(lpips_alex):
    from ldm_lab.metrics.lpips_metric import lpips_hole_bbox, lpips_pair

    rng = np.random.default_rng(1)
    ref, res = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    mask = np.zeros((64, 64), bool)
    mask[8:48, 16:56] = True
    assert lpips_hole_bbox(lpips_alex, res, ref, mask) == pytest.approx(
        lpips_pair(lpips_alex, res[8:48, 16:56], ref[8:48, 16:56])
    )
    small = np.zeros((64, 64), bool)
    small[:8, :8] = True
    with pytest.raises(MetricUnavailable, match="too small"):
        lpips_hole_bbox(lpips_alex, res, ref, small)


def test_lpips_unknown_net_is_rejected():
    from ldm_lab.metrics.lpips_metric import build_lpips

    with pytest.raises(ValueError, match="unknown LPIPS net"):
        build_lpips("squeezenet")


# ---- CLIP score ----------------------------------------------------------------------------------


def test_tiny_open_clip_scores_and_clipscore_scale(tmp_path):
    from ldm_lab.metrics.clip_score import build_clip, clip_scores, clipscore_from_cosine
    from ldm_lab.metrics.stand_ins import save_tiny_open_clip

    name, path = save_tiny_open_clip(tmp_path)
    clip = build_clip(name, None, path)
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    out = clip_scores(clip, imgs, ["a cat", "a lamp at night", "a red car"])
    assert set(out) == {"clip_cosine", "clipscore"} and out["clip_cosine"].shape == (3,)
    assert (np.abs(out["clip_cosine"]) <= 1).all()
    np.testing.assert_allclose(out["clipscore"], 2.5 * np.maximum(out["clip_cosine"], 0))
    np.testing.assert_allclose(clipscore_from_cosine(np.array([-0.2, 0.3])), [0.0, 0.75])
    assert clip.backbone == f"{name}/file" and "sha256:" in clip.protocol
    # Real-image baseline is the same function on (real image, caption) pairs: order-independent per sample.
    again = clip_scores(clip, imgs[::-1], ["a red car", "a lamp at night", "a cat"])
    # Another position in the batch can take another kernel path: the cosines of float32 unit embeddings
    # then move by a few float32 ULPs of 1 (not of the cosine: a small cosine is a cancellation). Seen:
    # 0 on an Intel Xeon, 4.4e-8 under MKL_CBWR=COMPATIBLE (8e-7 relative to a cosine of 0.055: rtol=1e-6
    # was at the edge); bound 16 ULPs of 1.0 = 1.9e-6; a caption paired with another image moves it by ~0.1.
    np.testing.assert_allclose(again["clip_cosine"][::-1], out["clip_cosine"], rtol=0, atol=16 * 2.0**-23)


def test_unregistered_clip_backbone_needs_a_weights_path():
    from ldm_lab.metrics.clip_score import build_clip

    with pytest.raises(ValueError, match="no registered weights"):
        build_clip("ViT-L-14", "openai")


# ---- I/O stage -----------------------------------------------------------------------------------


def test_read_image_modes_follow_the_settled_conversions(tmp_path):
    from ldm_lab.metrics.image_io import list_image_files, read_image_uint8

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red; transparent black becomes white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert read_image_uint8(tmp_path / "a.png")[0, 0].tolist() == [255, 0, 0]
    assert read_image_uint8(tmp_path / "a.png")[1, 1].tolist() == [255, 255, 255]
    Image.fromarray(np.full((2, 2), 257 * 100, np.uint16)).save(tmp_path / "b.png")  # 16-bit gray
    assert read_image_uint8(tmp_path / "b.png")[0, 0].tolist() == [100, 100, 100]
    (tmp_path / "c.png").write_bytes((tmp_path / "a.png").read_bytes()[:30])  # truncated
    with pytest.raises(ValueError, match="c.png"):
        read_image_uint8(tmp_path / "c.png")
    assert [p.name for p in list_image_files(tmp_path)] == ["a.png", "b.png", "c.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        list_image_files(tmp_path / "empty")
