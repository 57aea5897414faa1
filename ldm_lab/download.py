"""Resumable downloads with a progress bar (http(s) with Range requests, file:// and local paths).

Used by `ldm-lab models fetch`; tests pass a local source, never the network.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tqdm.auto import tqdm

CHUNK = 1 << 20


def download(source: str | os.PathLike, dst: str | os.PathLike, *, progress: bool = True) -> Path:
    """Copy `source` (URL or local path) to `dst` through `dst.part`, resuming a partial `.part` file."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")
    source = str(source)
    scheme = urlparse(source).scheme
    if scheme in ("", "file") or Path(source).exists():
        src = Path(urlparse(source).path if scheme == "file" else source)
        if not src.is_file():
            raise FileNotFoundError(f"download source not found: {source}")
        shutil.copyfile(src, part)
    elif scheme in ("http", "https"):
        try:
            _http(source, part, progress)
        except urllib.error.HTTPError as err:
            raise ConnectionError(f"cannot download {source}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:  # offline, DNS, refused, timeout
            kept = f"; {part} is kept and the next fetch resumes it" if part.exists() else ""
            raise ConnectionError(f"cannot download {source} ({getattr(err, 'reason', err)}): no network? "
                                  f"Give a local copy with --source, or put the file at {dst}{kept}") from err
    else:
        raise ValueError(f"unsupported download source {source!r}; expected an http(s):// or file:// URL or a path")
    os.replace(part, dst)
    return dst


def _http(url: str, part: Path, progress: bool) -> None:
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if done and response.status != 206:  # the server ignored Range: start again
            done = 0
        total = response.length + done if response.length is not None else None
        mode = "ab" if done else "wb"
        with open(part, mode) as out, tqdm(total=total, initial=done, unit="B", unit_scale=True,
                                           desc=part.name.removesuffix(".part"), disable=not progress) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
