"""What the three readers share: validation bookkeeping, skipped/stray records, iteration, fingerprint.

A reader indexes its files when it is built and validates every sample it keeps (`verify="header"` reads
each image header: existence, decodability of the header, sizes; `verify="full"` decodes every pixel once,
one image at a time, and so also finds truncated files; contents that decoded before are not decoded again,
`ldm_lab.data.decoded`). Pixels are loaded only in `__getitem__`, so a
reader never holds a whole set in memory. Readers are map-style datasets: `torch.utils.data.DataLoader`
accepts them as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from ldm_lab.data import decoded
from ldm_lab.data.files import SKIP_HINT, problems_error, relpath
from ldm_lab.data.fingerprint import cached_sha256, dataset_fingerprint
from ldm_lab.data.images import verify_image

VERIFY_MODES = ("header", "full")


class FolderDataset:
    """Base of the readers. Subclasses fill `self._samples` and implement `__getitem__`, `files`."""

    task = "dataset"

    def __init__(self, root: str | Path, *, verify: str = "header", skip_invalid: bool = False):
        if verify not in VERIFY_MODES:
            raise ValueError(f"`verify` must be one of {VERIFY_MODES}, got {verify!r}")
        self.root = Path(root).absolute()  # reader paths stay valid whatever the cwd
        self.verify = verify
        self.skip_invalid = bool(skip_invalid)
        self.skipped: list[tuple[str, str]] = []  # (relative path, reason) of samples left out
        self.stray: list[str] = []  # files found in the layout that the reader ignores
        self._samples: list = []

    # -- validation helpers -------------------------------------------------------------------------
    def _check_image(self, path: Path, problems: list[tuple[str, str]]) -> bool:
        """Verify one image file; on failure append (relative path, reason) to `problems`."""
        full = self.verify == "full"
        if full and decoded.known_good(path):
            return True
        reason = verify_image(path, full=full)
        if reason is not None:
            problems.append((relpath(path, self.root), reason))
        elif full:
            decoded.remember_good(path)
        return reason is None

    def _settle(self, problems: list[tuple[str, str]]) -> None:
        """Raise one error naming every problem, or record them in `skipped` when `skip_invalid`."""
        decoded.flush()
        if problems and not self.skip_invalid:
            raise problems_error(self.root, problems, SKIP_HINT)
        self.skipped.extend(problems)

    def _require_samples(self, where: Path) -> None:
        if not self._samples:
            skipped = f" ({len(self.skipped)} skipped as invalid)" if self.skipped else ""
            raise ValueError(f"no images found in {where}{skipped}")

    # -- dataset protocol ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator:
        for index in range(len(self)):
            yield self[index]

    def __getitem__(self, index: int):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def ids(self) -> list[str]:
        """Sample ids in evaluation order (file stems, or `stem#k` for extra captions)."""
        return [sample.id for sample in self._samples]

    def files(self) -> list[Path]:  # pragma: no cover - abstract
        """Every file the kept samples read (images, masks, caption file, ...)."""
        raise NotImplementedError

    def paths(self, index: int) -> dict[str, Path]:  # pragma: no cover - abstract
        """Files of sample `index` by role."""
        raise NotImplementedError

    def sample_digest(self, index: int) -> str:
        """sha256 over what sample `index` is made from: the content of each of its files (by role) and
        `_digest_text(index)`. Runs record it per image, so a resumed run can tell whether a finished image's
        inputs changed (`ldm_lab.tasks.run_dir`)."""
        paths = self.paths(index)
        hashes = cached_sha256(paths.values())
        digest = hashlib.sha256(b"ldm-lab-sample-inputs-v1\n")
        for role in sorted(paths):
            digest.update(f"{role}\t{hashes[paths[role]][1]}\n".encode())
        digest.update(self._digest_text(index).encode("utf-8"))
        return digest.hexdigest()

    def _digest_text(self, index: int) -> str:
        """Text that sample `index` is made from besides its files (text2img: the caption)."""
        return ""

    def selection_params(self) -> dict:
        """Options that change which samples or texts are used; part of the fingerprint."""
        return {"task": self.task}

    def fingerprint(self) -> str:
        """`dataset_fingerprint` of `files()` and `selection_params()` (cheap when called again)."""
        return dataset_fingerprint(self.root, self.files(), params=self.selection_params())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, n={len(self)}, skipped={len(self.skipped)})"


def check_max_samples(max_samples: int | None) -> int | None:
    """None or 0 means all samples; a negative or non-integer value is an error."""
    if max_samples is None or max_samples == 0:
        return None
    if not isinstance(max_samples, int) or isinstance(max_samples, bool) or max_samples < 0:
        raise ValueError(f"`max_samples` must be a non-negative integer (0 = all), got {max_samples!r}")
    return max_samples
