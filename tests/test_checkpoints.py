"""`ldm-lab models status|fetch`: local sources only (a zip in a temp dir, a loopback HTTP server)."""

from __future__ import annotations

import http.server
import threading
import zipfile

import pytest

from ldm_lab import checkpoints
from ldm_lab.download import download

from .conftest import make_tiny_checkpoint


def test_fetch_from_local_zip_unpacks_and_load_checks(tmp_path, tiny_entry):
    _, ckpt, _ = make_tiny_checkpoint("superres", tmp_path, ema=True)
    archive = tmp_path / "tiny_sr.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(ckpt, "tiny_sr/model.ckpt")
        zf.writestr("tiny_sr/config.yaml", "model: {}\n")
    models = tmp_path / "models"
    path = checkpoints.fetch("tiny-sr", models_dir=models, source=str(archive), progress=False)
    assert path == models / "ldm/tiny-sr/model.ckpt"
    assert path.read_bytes() == ckpt.read_bytes()
    assert (path.parent / "config.yaml").is_file()
    assert not (path.parent / "tiny_sr.zip").exists()  # the archive is removed after unpacking
    assert checkpoints.status(models, check=True)[-1]["state"].startswith("ok (sha256")


def test_fetch_refuses_a_checkpoint_that_does_not_load(tmp_path, tiny_entry):
    _, ckpt, _ = make_tiny_checkpoint("inpainting", tmp_path)  # wrong family for the SR config
    with pytest.raises(ValueError, match="does not load: load failed"):
        checkpoints.fetch("tiny-sr", models_dir=tmp_path / "models", source=f"file://{ckpt}", progress=False)


def test_zip_without_checkpoint_is_an_error(tmp_path, tiny_entry):
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(ValueError, match="exactly one .ckpt"):
        checkpoints.fetch("tiny-sr", models_dir=tmp_path / "models", source=str(archive), progress=False)


def test_unknown_model_and_source_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'sd-v1'"):
        checkpoints.fetch("sd-v1", models_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="download source not found"):
        download(tmp_path / "nope.ckpt", tmp_path / "out.ckpt")
    with pytest.raises(ValueError, match="unsupported download source"):
        download("ftp://host/file", tmp_path / "out.ckpt")


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = bytes(range(256)) * 4096  # 1 MiB

    def do_GET(self):  # noqa: N802 (http.server naming)
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_download_resumes_a_partial_file(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dst = tmp_path / "blob.bin"
        (tmp_path / "blob.bin.part").write_bytes(_RangeHandler.payload[:1000])  # an interrupted earlier try
        download(f"http://127.0.0.1:{server.server_port}/blob.bin", dst, progress=False)
        assert dst.read_bytes() == _RangeHandler.payload
    finally:
        server.shutdown()


def test_status_lists_missing_models_with_fetch_hint(tmp_path, capsys):
    from ldm_lab.cli import main

    assert main(["models", "status", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("inpainting_big", "bsr_sr", "text2img-large", "kl-f8", "vq-f4", "vq-f4-noattn"):
        assert f"ldm-lab models fetch {name}" in out


def test_doctor_names_the_fix_for_each_missing_piece(tmp_path):
    from ldm_lab import doctor

    text = doctor.report(models_dir=tmp_path / "models", data_dir=tmp_path)
    assert "torch" in text and "cuda" in text
    assert "fix: ldm-lab models fetch bsr_sr" in text
    assert "fix: ldm-lab prepare demo" in text
    assert "Metric weights:" in text and "BERT vocab" in text


class _Pickled:  # stands in for a Lightning callback object inside a checkpoint
    pass


def test_convert_a_pickled_checkpoint_to_safetensors(tmp_path, capsys):
    import torch

    import ldm
    from ldm_lab.cli import main

    config, ckpt, state = make_tiny_checkpoint("superres", tmp_path, ema=True)
    torch.save({"state_dict": state, "callbacks": _Pickled()}, ckpt)
    out = tmp_path / "model.safetensors"
    assert main(["models", "convert", str(ckpt), str(out)]) == 0  # the object stays an inert placeholder
    out.unlink()
    assert main(["models", "convert", "--trust-pickle", str(ckpt), str(out)]) == 0  # really unpickled
    model = ldm.load(config, out)
    assert model.load_report.ckpt_format == "safetensors"
