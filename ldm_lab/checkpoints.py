"""The CompVis checkpoints ldm-lab evaluates: where they come from, where they go, are they usable.

`ldm-lab models status` lists each model with its expected path and a load check; `ldm-lab models
fetch NAME` downloads it (resumable, with a progress bar), unpacks a zip release, then loads it through
`ldm.load` with the config we ship. Nothing is downloaded unless asked.

Examples:
    ldm-lab models status
    ldm-lab models fetch bsr_sr
    ldm-lab models fetch bsr_sr --source /mnt/mirror/sr_bsr.zip
    ldm-lab models status --check
    ldm-lab models convert models/ldm/bsr_sr/model.ckpt models/ldm/bsr_sr/model.safetensors

The released files are PyTorch Lightning checkpoints; they load through ldm's restricted unpickler
(`ldm.safe_pickle`): the Lightning objects inside become inert placeholders, nothing in the file is run.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ldm_lab.download import download

REPO = Path(__file__).resolve().parents[1]
OMMER = "https://ommer-lab.com/files/latent-diffusion"


@dataclass(frozen=True)
class CompVisModel:
    name: str
    url: str          # public release (a .ckpt or a .zip holding one)
    path: str         # checkpoint path relative to models/
    config: str       # config we ship, relative to the repository root
    task: str


# fmt: off
MODELS: dict[str, CompVisModel] = {m.name: m for m in (
    CompVisModel("inpainting_big", "https://heibox.uni-heidelberg.de/f/4d9ac7ea40c64582b7c9/?dl=1",
                 "ldm/inpainting_big/last.ckpt", "configs/ldm/inpainting_big.yaml", "inpainting"),
    CompVisModel("bsr_sr", f"{OMMER}/sr_bsr.zip", "ldm/bsr_sr/model.ckpt", "configs/ldm/bsr_sr.yaml", "superres"),
    CompVisModel("text2img-large", f"{OMMER}/nitro/txt2img-f8-large/model.ckpt", "ldm/text2img-large/model.ckpt",
                 "configs/ldm/txt2img-1p4B-eval.yaml", "text2img"),
    CompVisModel("kl-f8", f"{OMMER}/kl-f8.zip", "first_stage_models/kl-f8/model.ckpt",
                 "configs/first_stage_models/kl-f8.yaml", "first stage"),
    CompVisModel("vq-f4", f"{OMMER}/vq-f4.zip", "first_stage_models/vq-f4/model.ckpt",
                 "configs/first_stage_models/vq-f4.yaml", "first stage"),
    CompVisModel("vq-f4-noattn", f"{OMMER}/vq-f4-noattn.zip", "first_stage_models/vq-f4-noattn/model.ckpt",
                 "configs/first_stage_models/vq-f4-noattn.yaml", "first stage"),
)}
# fmt: on


def model_entry(name: str) -> CompVisModel:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]


def checkpoint_path(name: str, models_dir: str | os.PathLike = REPO / "models") -> Path:
    return Path(models_dir) / model_entry(name).path


def load_check(name: str, ckpt: Path) -> str:
    """'ok (...)' when `ldm.load` accepts the checkpoint with the shipped config, else the error."""
    import ldm

    try:
        model = ldm.load(REPO / model_entry(name).config, ckpt, device="cpu")
    except Exception as err:  # any failure is reported on the status line, never as a traceback
        return f"load failed: {err if isinstance(err, (ValueError, OSError)) else f'{type(err).__name__}: {err}'}"
    return f"ok (sha256 {model.load_report.ckpt_sha256[:12]}, EMA {model.load_report.ema})"


def status(models_dir: str | os.PathLike = REPO / "models", *, check: bool = False) -> list[dict]:
    """One row per model: present or missing at its expected path (and a load check when asked)."""
    rows = []
    for name, m in MODELS.items():
        path = checkpoint_path(name, models_dir)
        state = "missing" if not path.is_file() else (load_check(name, path) if check else "present")
        rows.append({"name": name, "task": m.task, "state": state, "path": str(path), "url": m.url})
    return rows


def fetch(name: str, *, models_dir: str | os.PathLike = REPO / "models", source: str | None = None,
          progress: bool = True) -> Path:
    """Download (or copy from `source`) a model release, unpack its .ckpt, and load-check it."""
    m, dst = model_entry(name), checkpoint_path(name, models_dir)
    src = source or m.url
    if not (str(src).endswith(".zip") or _is_zip_name(src)):
        download(src, dst, progress=progress)
    else:
        archive = download(src, dst.parent / Path(m.url.split("?")[0]).name, progress=progress)
        _extract_checkpoint(archive, dst)
    result = load_check(name, dst)
    if not result.startswith("ok"):
        raise ValueError(f"{name}: {dst} was fetched from {src} but does not load: {result}")
    return dst


def _is_zip_name(src: str) -> bool:
    """A local release archive (a zip holding a .ckpt), not a zip-format torch checkpoint itself."""
    path = Path(str(src))
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith(".ckpt") for name in zf.namelist())


def _extract_checkpoint(archive: Path, dst: Path) -> None:
    """Write the single .ckpt inside `archive` to `dst` (and keep a config.yaml beside it if present)."""
    with zipfile.ZipFile(archive) as zf:
        ckpts = [n for n in zf.namelist() if n.endswith(".ckpt")]
        if len(ckpts) != 1:
            raise ValueError(f"{archive}: expected exactly one .ckpt inside, found {ckpts or 'none'}")
        with zf.open(ckpts[0]) as src, open(dst.with_name(dst.name + ".part"), "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.replace(dst.with_name(dst.name + ".part"), dst)
        configs = [n for n in zf.namelist() if n.endswith("config.yaml")]
        if configs:
            dst.with_name("config.yaml").write_bytes(zf.read(configs[0]))
    archive.unlink()


def convert_to_safetensors(src: str | os.PathLike, dst: str | os.PathLike, *, trust_pickle: bool = False) -> Path:
    """Re-save a checkpoint's state_dict as .safetensors (tensors only; shared tensors are stored once each)."""
    from safetensors.torch import save_file

    from ldm.checkpoint import read_checkpoint

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"`dst` must end in .safetensors, got {dst}")
    state = read_checkpoint(src, trust_pickle=trust_pickle).state
    seen: set[int] = set()
    tensors = {}
    for key, value in state.items():  # inpainting_big holds the first stage twice, on one storage
        ptr = value.untyped_storage().data_ptr()
        tensors[key] = value.clone() if ptr in seen and value.numel() else value.contiguous()
        seen.add(ptr)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    try:
        save_file(tensors, str(tmp))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


# ----------------------------------------------------------------------------
# CLI.
def _cmd_status(args) -> int:
    rows = status(args.models_dir, check=args.check)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        hint = f"  -> ldm-lab models fetch {r['name']}" if r["state"] == "missing" else ""
        print(f"{r['name']:<{width}}  {r['task']:<12} {r['state']:<8} {r['path']}{hint}")
    return 1 if any(r["state"].startswith("load failed") for r in rows) else 0


def _cmd_fetch(args) -> int:
    path = fetch(args.name, models_dir=args.models_dir, source=args.source)
    print(f"{args.name}: {path} ({load_check(args.name, path)})")
    return 0


def register(subparsers) -> None:
    """Add `models status` and `models fetch NAME`."""
    p = subparsers.add_parser("models", help="CompVis checkpoints: status and fetch", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    st = sub.add_parser("status", help="which checkpoints are present at their expected paths")
    st.add_argument("--check", action="store_true", help="also load each present checkpoint with ldm.load")
    st.add_argument("--models-dir", default=str(REPO / "models"))
    st.set_defaults(func=_cmd_status)
    fe = sub.add_parser("fetch", help="download a checkpoint (resumable), unpack, load-check")
    fe.add_argument("name", choices=sorted(MODELS))
    fe.add_argument("--source", default=None, help="URL or local file to use instead of the public release")
    fe.add_argument("--models-dir", default=str(REPO / "models"))
    fe.set_defaults(func=_cmd_fetch)
    cv = sub.add_parser("convert", help="re-save a checkpoint's state_dict as .safetensors (tensors only)")
    cv.add_argument("src")
    cv.add_argument("dst", help="output file ending in .safetensors")
    cv.add_argument("--trust-pickle", action="store_true",
                    help="unpickle SRC without restrictions (runs code the file names; only for exotic files you "
                         "trust: the released Lightning checkpoints do not need it)")
    cv.set_defaults(func=lambda a: print(convert_to_safetensors(a.src, a.dst, trust_pickle=a.trust_pickle)) or 0)
