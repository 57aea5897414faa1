"""Released-layout checkpoints (PyTorch Lightning, zip and legacy) load safely by default; hostile files run nothing."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict

import pytest
import torch

import ldm
from ldm import safe_pickle
from ldm.checkpoint import TRUST_FLAG, CheckpointError, read_checkpoint
from ldm_lab import checkpoints
from ldm_lab.checkpoints import CompVisModel
from ldm_lab.cli import main
from ldm_lab.lightning_layout import AttributeDict, lightning_names, save_lightning_checkpoint

from .conftest import REPO, TINY_VOCAB, make_tiny_checkpoint

FAMILIES = {"inpainting": True, "superres": True, "txt2img": False}  # family -> saved with EMA copies
EXPECTED_ENTRIES = ["epoch: 3", "global_step: 12345", "pytorch-lightning_version: '1.4.2'",
                    "callbacks: ModelCheckpoint (not executed)", "optimizer_states: skipped", "lr_schedulers: skipped",
                    "hparams_name: 'kwargs'", "hyper_parameters: AttributeDict (not executed)"]


def _load(config, ckpt, family, **kwargs):
    return ldm.load(config, ckpt, tokenizer=TINY_VOCAB if family == "txt2img" else None, **kwargs)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_lightning_layout_loads_by_default_with_the_plain_files_weights(tmp_path, family, legacy):
    config, plain, state = make_tiny_checkpoint(family, tmp_path, ema=FAMILIES[family])
    lightning = save_lightning_checkpoint(tmp_path / "last.ckpt", state, legacy=legacy, hparams=True)
    before = set(sys.modules)
    model = _load(config, lightning, family)
    assert not {m for m in set(sys.modules) - before if m.startswith(("pytorch_lightning", "ldm.lr_scheduler"))}
    reference = _load(config, plain, family)
    assert model.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():  # the same bytes read back: identical
        assert torch.equal(model.state_dict()[key], value), key
    report = model.load_report
    assert report.ckpt_format == ("torch-legacy" if legacy else "torch-zip")
    assert report.other_entries == EXPECTED_ENTRIES
    assert report.ema == reference.load_report.ema and report.ignored_keys == reference.load_report.ignored_keys


def test_cast_happens_while_loading(tmp_path):
    config, _, state = make_tiny_checkpoint("superres", tmp_path, ema=True)
    ckpt = save_lightning_checkpoint(tmp_path / "last.ckpt", state)
    fp32, bf16 = ldm.load(config, ckpt), ldm.load(config, ckpt, dtype=torch.bfloat16)
    assert bf16.load_report.dtype == "bfloat16" and bf16.alphas_cumprod.dtype == torch.float32
    for key, value in fp32.state_dict().items():
        if "." in key and value.is_floating_point():
            assert bf16.state_dict()[key].dtype == torch.bfloat16
            assert torch.equal(bf16.state_dict()[key], value.to(torch.bfloat16)), key  # one rounding, same op


def _mapped_ranges(path) -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == str(path.resolve()):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps (Linux)")
@pytest.mark.parametrize("use_ema", [True, False])
def test_zip_weights_are_used_in_place_from_the_mapped_file(tmp_path, use_ema):
    """No copy of a zip file's weights: every network tensor of the model points into the mapped file."""
    config, _, state = make_tiny_checkpoint("superres", tmp_path, ema=True)
    ckpt = save_lightning_checkpoint(tmp_path / "last.ckpt", state)
    model = ldm.load(config, ckpt, use_ema=use_ema)
    ranges = _mapped_ranges(ckpt)
    assert ranges, "the checkpoint is not memory-mapped"
    for key, value in model.state_dict().items():
        if "." in key:  # networks (the schedule buffers are the config's)
            assert any(a <= value.data_ptr() < b for a, b in ranges), key


def test_legacy_optimizer_state_is_never_read(tmp_path):
    """torch.load reads every storage of a legacy file; ours seeks past the AdamW moments."""
    _, plain, state = make_tiny_checkpoint("superres", tmp_path, ema=True)
    ckpt = save_lightning_checkpoint(tmp_path / "last.ckpt", state, legacy=True)
    checkpoint = read_checkpoint(ckpt)
    moments = sum(2 * v.numel() * v.element_size() for k, v in state.items() if k.startswith("model.diffusion_model."))
    assert checkpoint.skipped_bytes == moments > 0
    assert checkpoint.other_entries[4:6] == ["optimizer_states: skipped", "lr_schedulers: skipped"]
    reference = torch.load(plain, weights_only=True)["state_dict"]
    assert checkpoint.state.keys() == reference.keys()
    assert all(torch.equal(checkpoint.state[k], v) for k, v in reference.items())


def test_state_dict_must_hold_tensors_only(tmp_path):
    config, _, state = make_tiny_checkpoint("txt2img", tmp_path)
    for bad, what in ((AttributeDict(a=1), "AttributeDict object"), ([1, 2], "list")):
        ckpt = tmp_path / "bad.ckpt"
        with lightning_names():
            torch.save({"state_dict": dict(state, **{"model.extra": bad})}, ckpt)
        with pytest.raises(CheckpointError, match=rf"state_dict entry 'model.extra' is a {what}"):
            ldm.load(config, ckpt)


def test_an_object_state_dict_needs_trust_pickle_and_then_loads(tmp_path):
    config, _, state = make_tiny_checkpoint("txt2img", tmp_path)
    ckpt = tmp_path / "exotic.ckpt"
    with lightning_names():
        torch.save({"state_dict": AttributeDict(state)}, ckpt)  # a dict subclass from a library we lack
        with pytest.raises(CheckpointError) as err:
            ldm.load(config, ckpt)
        assert "AttributeDict object (not executed)" in str(err.value) and TRUST_FLAG in str(err.value)
        model = ldm.load(config, ckpt, trust_pickle=True)  # the stand-in class is importable right now
    assert torch.equal(model.state_dict()["model.diffusion_model.out.2.weight"],
                       state["model.diffusion_model.out.2.weight"])


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_torchscript_archive_is_refused(tmp_path):
    config, _, _ = make_tiny_checkpoint("txt2img", tmp_path)
    path = tmp_path / "scripted.ckpt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        ldm.load(config, path)


def test_truncated_legacy_file_is_one_clear_error(tmp_path):
    config, _, state = make_tiny_checkpoint("txt2img", tmp_path)
    ckpt = save_lightning_checkpoint(tmp_path / "legacy.ckpt", state, legacy=True)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ldm.load(config, ckpt)


# ----------------------------------------------------------------------------
# Hostile files: every way a pickle can run code, through every entry point.
class _Call:
    """Pickles as `func(*args)`; `func` may itself be a _Call (a getattr/__import__ chain)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # only so that pickle accepts a _Call in the callable position
        raise AssertionError("never called while pickling")


def _payloads(marker) -> dict[str, object]:
    touch = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    imported_os = _Call(__import__, "os")
    return {
        "os.system": _Call(os.system, touch),
        "eval": _Call(eval, code),
        "exec": _Call(exec, code),
        "getattr chain": _Call(_Call(getattr, imported_os, "system"), touch),
        "subprocess": _Call(subprocess.call, ["touch", str(marker)]),
        "reduce on a placeholder's result": _Call(_Call(_Call(getattr, _Call(__import__, "builtins"), "eval"), code)),
        "module import side effect": _Call(getattr, _Call(__import__, "this"), "s"),
    }


def _hostile_bytes(marker) -> dict[str, tuple[bytes, bool]]:
    """Raw pickles that reach code through opcodes torch.save never writes: name -> (bytes, runs under pickle)."""
    cmd = f"touch {marker}".encode()
    hooked = _Call(torch._utils._rebuild_tensor_v2, None, 0, (1,), (1,), False, OrderedDict({0: os.system}))
    return {
        "INST": (b"(S'" + cmd + b"'\nios\nsystem\n.", True),  # protocol 0: instantiate os.system(cmd)
        "OBJ": (b"(cos\nsystem\nS'" + cmd + b"'\no.", True),  # class object, then its arguments
        # BUILD that plants an instance __setstate__, then a second BUILD that calls it
        "BUILD __setstate__": (b"ccollections\nOrderedDict\n)R}S'__setstate__'\ncos\nsystem\nsbS'" + cmd
                               + b"'\nb.", True),
        "STACK_GLOBAL": (pickle.dumps(_Call(os.system, f"touch {marker}"), protocol=4), True),
        "NEWOBJ_EX": (b"\x80\x04cos\nsystem\n)}\x92.", False),
        "EXT2": (b"\x80\x02\x82\x01\x00.", False),
        "backward hook": (pickle.dumps(hooked, protocol=2), False),  # would run on backward()
    }


def _write_hostile(path, state, marker, *, legacy: bool, in_state_dict: bool = False):
    payloads = _payloads(marker)
    if in_state_dict:
        obj = {"state_dict": dict(state, **{"model.evil": payloads["os.system"]})}
    else:
        obj = {"state_dict": state, **{f"exploit {name}": p for name, p in payloads.items()}}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a hostile checkpoint ran code"


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_hostile_entries_run_nothing_and_are_reported(tmp_path, marker, legacy):
    config, _, state = make_tiny_checkpoint("txt2img", tmp_path)
    ckpt = _write_hostile(tmp_path / "hostile.ckpt", state, marker, legacy=legacy)
    sys.modules.pop("this", None)
    model = ldm.load(config, ckpt)
    assert "this" not in sys.modules  # not even imported
    entries = dict(line.split(": ", 1) for line in model.load_report.other_entries)
    assert entries["exploit os.system"] == "system (not executed)"
    assert entries["exploit eval"] == "eval (not executed)"
    assert entries["exploit getattr chain"] == "__import__, getattr (not executed)"
    assert torch.equal(model.state_dict()["model.diffusion_model.out.2.weight"],
                       state["model.diffusion_model.out.2.weight"])


@pytest.mark.parametrize("name", list(_hostile_bytes("x")))
def test_hand_made_opcode_exploits_are_refused_or_inert(tmp_path, marker, name):
    data, runs = _hostile_bytes(marker)[name]
    if runs:  # prove the payload is a working exploit: plain pickle, in a child process, on another marker
        proof = tmp_path / "proof"
        child = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
        subprocess.run([sys.executable, "-c", child], input=data.replace(str(marker).encode(), str(proof).encode()),
                       capture_output=True, timeout=60)
        assert proof.exists(), f"{name}: the payload does not run code under plain pickle"
    try:
        result = safe_pickle.loads(data)
    except pickle.UnpicklingError:
        return
    assert isinstance(result, (safe_pickle.Inert, safe_pickle.Placeholder, OrderedDict)), type(result)


def test_restricted_unpickler_rebuilds_plain_data_exactly():
    data = {"a": [1, 2.5, "x", None, True], "b": (b"bytes", bytearray(b"ba")), "c": {1, 2}, "d": frozenset({3}),
            "e": OrderedDict(k=1), "f": complex(1, 2), "g": slice(1, 5, 2), "t": torch.Size([2, 3]),
            "dtype": torch.bfloat16, "dev": torch.device("cpu")}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert safe_pickle.loads(pickle.dumps(data, protocol=protocol)) == data


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_hostile_state_dict_entry_is_an_error_naming_the_key(tmp_path, marker, legacy):
    config, _, state = make_tiny_checkpoint("txt2img", tmp_path)
    ckpt = _write_hostile(tmp_path / "hostile.ckpt", state, marker, legacy=legacy, in_state_dict=True)
    with pytest.raises(CheckpointError, match=r"state_dict entry 'model.evil' is a system object \(not executed\)"):
        ldm.load(config, ckpt)


@pytest.mark.parametrize("in_state_dict", [False, True], ids=["beside", "inside state_dict"])
def test_hostile_file_through_every_cli_entry_point(tmp_path, marker, tiny_entry, capsys, in_state_dict):
    _, _, state = make_tiny_checkpoint("superres", tmp_path, ema=True)
    ckpt = _write_hostile(tmp_path / "hostile.ckpt", state, marker, legacy=False, in_state_dict=in_state_dict)
    models = tmp_path / "models"
    code = main(["models", "fetch", "tiny-sr", "--source", str(ckpt), "--models-dir", str(models)])
    assert (code == 2) is in_state_dict and (code == 0) is not in_state_dict
    (models / tiny_entry.path).parent.mkdir(parents=True, exist_ok=True)
    (models / tiny_entry.path).write_bytes(ckpt.read_bytes())
    assert main(["models", "status", "--check", "--models-dir", str(models)]) == (1 if in_state_dict else 0)
    code = main(["models", "convert", str(ckpt), str(tmp_path / "out.safetensors")])
    assert code == (2 if in_state_dict else 0)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out and "Beautiful is better" not in out.out
    if in_state_dict:
        assert "state_dict entry 'model.evil'" in out.err and "Traceback" not in out.err


def test_hostile_file_in_a_fresh_process_imports_nothing(tmp_path, marker):
    """`ldm-lab models convert` as a user runs it: no Lightning, no module the file names is imported."""
    _, _, state = make_tiny_checkpoint("txt2img", tmp_path)
    ckpt = _write_hostile(tmp_path / "hostile.ckpt", state, marker, legacy=True)
    script = ("import sys; from ldm_lab.cli import main; code = main(['models', 'convert', sys.argv[1], sys.argv[2]]);"
              "print(sorted(m for m in sys.modules if m in ('this', 'subprocess_exploit') or "
              "m.startswith('pytorch_lightning'))); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", script, str(ckpt), str(tmp_path / "o.safetensors")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]" and "Beautiful is better" not in proc.stdout


# ----------------------------------------------------------------------------
# `models convert` without --trust-pickle, shared tensors, and one-line errors.
def test_convert_lightning_checkpoint_without_trust(tmp_path, capsys):
    config, _, state = make_tiny_checkpoint("inpainting", tmp_path, ema=True)  # first stage stored twice
    ckpt = save_lightning_checkpoint(tmp_path / "last.ckpt", state, legacy=True)
    out = tmp_path / "model.safetensors"
    assert main(["models", "convert", str(ckpt), str(out)]) == 0
    converted, original = ldm.load(config, out), ldm.load(config, ckpt)
    assert converted.load_report.ckpt_format == "safetensors"
    for key, value in original.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\nq\x00.")  # data.pkl without its storages
    assert main(["models", "convert", str(bad), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err
    with pytest.raises(CheckpointError):
        main(["--debug", "models", "convert", str(bad), str(tmp_path / "o.safetensors")])
    assert not (tmp_path / "o.safetensors").exists()


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(checkpoints, "_cmd_status", boom)
    assert main(["models", "status"]) == 1
    err = capsys.readouterr().err
    assert err == "ldm-lab: error: RuntimeError: disk on fire (run with --debug for the traceback)\n"


def test_loading_does_not_need_the_lightning_stand_ins(tmp_path):
    """Written with the stand-ins, read in a process where no such module exists."""
    config, _, state = make_tiny_checkpoint("superres", tmp_path, ema=True)
    ckpt = save_lightning_checkpoint(tmp_path / "last.ckpt", state, hparams=True)
    script = ("import sys, ldm; m = ldm.load(sys.argv[1], sys.argv[2]); "
              "assert not any(k.startswith(('pytorch_lightning', 'ldm_lab')) for k in sys.modules); "
              "print(m.load_report.other_entries[3])")
    proc = subprocess.run([sys.executable, "-c", script, str(config), str(ckpt)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "callbacks: ModelCheckpoint (not executed)"


def test_pickle_bytes_name_the_real_lightning_classes(tmp_path):
    _, _, state = make_tiny_checkpoint("txt2img", tmp_path)
    ckpt = save_lightning_checkpoint(tmp_path / "last.ckpt", state, hparams=True)
    with zipfile.ZipFile(ckpt) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert b"pytorch_lightning.callbacks.model_checkpoint\nModelCheckpoint" in data
    assert b"pytorch_lightning.utilities.parsing\nAttributeDict" in data
    assert "pytorch_lightning" not in sys.modules  # the stand-ins were registered only while saving


def test_first_stage_release_zip_goes_through_the_same_path(tmp_path, monkeypatch):
    """A first-stage release (kl-f8.zip, vq-f4.zip, ...): a Lightning last.ckpt with the autoencoder, its
    training losses (`loss.*`: LPIPS + discriminator) and optimizer state for both, inside a zip."""
    import yaml

    from ldm_lab.demo_models import demo_state_dict

    tiny = yaml.safe_load((REPO / "configs" / "tiny" / "inpainting.yaml").read_text())
    first_stage = dict(tiny["model"]["params"]["first_stage_config"], target="ldm.models.autoencoder.VQModel")
    config = tmp_path / "vq-f4-tiny.yaml"
    config.write_text(yaml.safe_dump({"model": first_stage}))
    state = demo_state_dict(ldm.build_model(ldm.load_config(config)), 5)
    state["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 8, 1, 1)
    ckpt = save_lightning_checkpoint(tmp_path / "model.ckpt", state, trained_prefix="")
    archive = tmp_path / "vq-f4-tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(ckpt, "model.ckpt")
    monkeypatch.setitem(checkpoints.MODELS, "vq-f4-tiny", CompVisModel(
        "vq-f4-tiny", "https://example.invalid/vq-f4-tiny.zip", "first_stage_models/vq-f4-tiny/model.ckpt",
        str(config), "first stage"))
    path = checkpoints.fetch("vq-f4-tiny", models_dir=tmp_path / "models", source=str(archive), progress=False)
    model = ldm.load(config, path)
    assert isinstance(model, ldm.Autoencoder)
    assert model.load_report.ignored_keys == sorted(k for k in state if k.startswith("loss."))
    assert "optimizer_states: skipped" in model.load_report.other_entries
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_self_referencing_entries_end(tmp_path, legacy):
    """The pickle memo can build cycles (a list holding itself): walking them for the report ends."""
    _, _, state = make_tiny_checkpoint("txt2img", tmp_path)
    cycle: list = [torch.zeros(2)]
    cycle.append(cycle)
    ckpt = tmp_path / "cycle.ckpt"
    torch.save({"state_dict": state, "loops": cycle, "notes": cycle}, ckpt, _use_new_zipfile_serialization=not legacy)
    checkpoint = read_checkpoint(ckpt)
    assert checkpoint.other_entries == ["loops: skipped", "notes: list of 2"]
    assert checkpoint.skipped_bytes == 0  # the tensor is also held by a kept entry: read
