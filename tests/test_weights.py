"""Offline weights registry: resolution order, hash checks, the missing-file message, CLI commands.
Nothing here touches the network: the downloader is replaced by a local copy."""

import hashlib
import json
import shutil

import pytest

from ldm_lab import cli, weights


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty models dir and library caches."""
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_missing_weights_error_names_file_url_and_destination(isolated):
    with pytest.raises(FileNotFoundError) as err:
        weights.resolve("inception-fid")
    msg = str(err.value)
    w = weights.REGISTRY["inception-fid"]
    assert w.file in msg and w.url in msg and str(isolated / "models" / "metrics" / w.file) in msg
    assert "ldm-lab weights fetch inception-fid" in msg


def test_download_failure_offline_still_gives_the_clear_error(isolated, monkeypatch):
    def offline(url, dst):
        raise OSError("network unreachable")

    monkeypatch.setattr(weights, "_download", offline)
    with pytest.raises(FileNotFoundError, match="network unreachable") as err:
        weights.resolve("vgg16", download=True)
    assert weights.REGISTRY["vgg16"].url in str(err.value)


def test_resolution_order_explicit_then_models_then_library_cache(isolated):
    name = "alexnet"
    cached = isolated / "torch" / "hub" / "checkpoints" / weights.REGISTRY[name].file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"torch hub copy")
    assert weights.find(name) == cached
    assert weights.resolve(name, verify=False) == cached
    target = weights.target_path(name)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"models copy")
    assert weights.resolve(name, verify=False) == target  # models/ wins over the library cache
    explicit = isolated / "mine.pth"
    explicit.write_bytes(b"explicit")
    assert weights.resolve(name, explicit) == explicit  # explicit wins, no hash check
    with pytest.raises(FileNotFoundError, match="given explicitly"):
        weights.resolve(name, isolated / "typo.pth")


def test_hash_mismatch_is_an_error_and_prefix_hashes_are_checked(isolated):
    target = weights.target_path("alexnet")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not alexnet")
    assert weights.check("alexnet", target) == "sha256 mismatch"
    with pytest.raises(ValueError, match="expected 7be5be79"):
        weights.resolve("alexnet")


def test_package_shipped_files_resolve_and_verify():
    path = weights.resolve("lpips-alex-lin")  # shipped inside the lpips package
    assert path.name == "alex.pth" and weights.check("lpips-alex-lin", path) == "ok"
    assert weights.sha256_of(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_downloads_into_models_and_verifies(isolated, monkeypatch):
    source = weights.resolve("lpips-vgg-lin")
    monkeypatch.setattr(weights, "_download", lambda url, dst: shutil.copyfile(source, dst))
    monkeypatch.setattr(weights, "library_cache_paths", lambda name: [])
    dst = weights.resolve("lpips-vgg-lin", download=True)
    assert dst == weights.target_path("lpips-vgg-lin") and dst.read_bytes() == source.read_bytes()
    monkeypatch.setattr(weights, "_download", lambda url, dst: dst.write_bytes(b"corrupted"))
    with pytest.raises(ValueError, match="has sha256"):
        weights.fetch("lpips-alex-lin")
    assert not weights.target_path("lpips-alex-lin").exists()


def test_cli_status_and_fetch(isolated, monkeypatch, capsys):
    assert cli.main(["weights", "status", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(weights.REGISTRY)
    assert rows["inception-fid"]["state"] == "missing" and rows["lpips-alex-lin"]["state"] == "ok"
    assert cli.main(["weights", "status"]) == 0
    assert "put it at" in capsys.readouterr().out

    def offline(url, dst):
        raise OSError("network unreachable")

    monkeypatch.setattr(weights, "_download", offline)
    assert cli.main(["weights", "fetch", "inception-fid"]) == 1
    out = capsys.readouterr().out
    assert "cannot download" in out and str(weights.target_path("inception-fid")) in out
    assert cli.main(["weights", "fetch", "no-such-file"]) == 2
    assert "unknown weights" in capsys.readouterr().err


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="choose from"):
        weights.resolve("inception")
