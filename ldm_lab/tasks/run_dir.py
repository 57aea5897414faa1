"""The output folder of a run: resume check against run.json, overwrite, finished-image bookkeeping.

Resume rule (design §9), checked by `prepare` before anything is written:

- every output-affecting parameter (`resume_key` in run.json: hashes of config and checkpoint, sampler,
  steps, seed, dtype, ..., and the dataset *selection*: max_samples, scale, caption policy) must match;
  otherwise the rerun refuses and lists the differing fields;
- every *finished* image (all its files exist; files are written atomically, so a file that exists is
  complete) must be the same sample made from the same inputs: the sample at its index has the id and the
  input digest (content sha256 of its dataset files, and its caption) recorded in run.json. Otherwise the
  rerun refuses and names the images;
- images that are not finished take the dataset as it is now: a repaired, replaced or added file that only
  unfinished images use does not block the run. The metrics are always recomputed over the whole plan.

`overwrite=True` deletes this project's outputs in the folder (never other files, e.g. a report) and starts
again. Run folders written before inputs were recorded per image are checked by their dataset fingerprint.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ldm_lab import distributed
from ldm_lab.results import RUN_JSON, plain, read_json, write_json

RESUME_HINT = "pass overwrite=True (--overwrite) to start again, or choose a new output_dir"
# Files and folders a runner writes (only these are deleted by overwrite, or block a run without run.json).
OWN_FILES = re.compile(
    r"(inpainted|generated)_\d{5}\.png|run\.json|metrics\.json|per_sample(_baseline)?\.csv"
    r"|evaluation_results\.(json|txt)|urban100_x\d+_results\.json"
)
OWN_DIRS = ("inputs", "baseline", "references", "sample_results", "sr", ".unsaved")

# Test hook: called with the 0-based index after each image's files are written (e.g. to interrupt a run).
after_image_hook: Callable[[int], None] | None = None


class RunFolder:
    """Output folder of one task run; `prepare()` applies the resume rule before anything is written."""

    def __init__(self, output_dir: str | Path, task: str, resume_key: dict, *, overwrite: bool = False):
        self.root = Path(output_dir)
        self.task = task
        self.resume_key = plain(dict(resume_key))  # compared with its JSON round trip
        self.overwrite = bool(overwrite)
        self.resumed = False
        self.started = False
        self.stored: dict = {}  # run.json of the run being resumed, as found by `prepare`
        self.manifest: dict | None = None  # the manifest passed to `start` (updated in place by the runner)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def own_entries(self) -> list[Path]:
        """This project's outputs present in the folder."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if (p.is_file() and OWN_FILES.fullmatch(p.name)) or (p.is_dir() and p.name in OWN_DIRS))

    def prepare(self, plan: list | None = None, *, fingerprint: str | None = None) -> None:
        """Check the folder against `resume_key` and the finished images' inputs (module docstring) for the
        `plan` (`engine.Planned` items) of the dataset with `fingerprint`; nothing is written or deleted."""
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"`output_dir` is an existing file, not a folder: {self.root}")
        own = self.own_entries()
        if own and not self.overwrite:
            manifest = self.root / RUN_JSON
            if not manifest.is_file():
                raise ValueError(
                    f"`output_dir` {self.root} holds outputs ({', '.join(p.name for p in own[:5])}) but no "
                    f"{RUN_JSON}, so they cannot be checked for resuming; {RESUME_HINT}"
                )
            stored = read_json(manifest)
            old_key = dict(stored.get("resume_key") or {}, task=stored.get("task"))
            new_key = dict(self.resume_key, task=self.task)
            if "dataset_fingerprint" in old_key:  # a folder from before per-image input digests
                new_key.pop("dataset_selection", None)
                new_key["dataset_fingerprint"] = fingerprint
            differing = diff_keys(old_key, new_key)
            if differing:
                raise ValueError(
                    f"`output_dir` {self.root} holds a run with different output-affecting parameters: "
                    f"{'; '.join(differing)}. {RESUME_HINT}"
                )
            changed = self.changed_inputs(stored.get("samples") or [], plan or [])
            if changed:
                raise ValueError(
                    f"`output_dir` {self.root} holds {len(changed)} finished image(s) whose sample or inputs "
                    f"differ from the dataset now: {'; '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}. "
                    f"Restore those files, or {RESUME_HINT}"
                )
            self.resumed = True
            self.stored = stored

    def changed_inputs(self, stored: list[dict], plan: list) -> list[str]:
        """Finished images of the stored run that the current `plan` would not make from the same inputs."""
        current = {p.record.index: p for p in plan}
        out = []
        for entry in stored:
            index = entry["index"]
            planned = current.get(index)
            outputs = planned.outputs if planned is not None else list(entry.get("files", {}).values())
            if not outputs or not self.finished(outputs):
                continue
            name = f"image {index + 1} ({entry['id']})"
            if planned is None:
                out.append(f"{name} is not in this run's selection of {len(plan)} sample(s)")
            elif planned.record.id != entry["id"]:
                out.append(f"{name} would now be made from {planned.record.id}")
            elif "inputs_sha256" in entry and entry["inputs_sha256"] != planned.inputs_sha256:
                out.append(f"{name}: its input files changed since it was made")
        return out

    def previous_manifest(self) -> dict:
        """run.json of the run being resumed ({} for a new run)."""
        return read_json(self.root / RUN_JSON) if self.resumed else {}

    def start(self, manifest: dict) -> None:
        """Delete this project's old outputs when overwriting, then write run.json (status "running").

        Sharded (`ldm_lab.distributed`): every rank has checked the folder before rank 0 alone cleans it and
        writes run.json, and no rank samples before that is done.
        """
        shard = distributed.current()
        previous = self.stored.get("distributed", {}) if not self.overwrite else {}
        manifest["distributed"] = {"world_size": previous.get("world_size", shard.world_size),
                                   "sessions": list(previous.get("sessions", []))}
        self.manifest = manifest
        distributed.gather(None)  # every rank has run `prepare` on the untouched folder
        if shard.is_main:
            if self.overwrite:
                for entry in self.own_entries():
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            self.root.mkdir(parents=True, exist_ok=True)
            self.write_manifest(manifest)
        distributed.gather(None)  # the folder is ready for every rank
        self.started = True

    def record_session(self, session: dict) -> None:
        """Add one sampling session (world size, images per rank, seconds) to run.json; rank 0 writes it."""
        record = self.manifest["distributed"]
        record["sessions"].append(session)
        record["world_size"] = session["world_size"]  # the world size that sampled last
        if distributed.current().is_main:
            self.write_manifest(self.manifest)

    def finished(self, rel_paths: list[str]) -> bool:
        """True when every file of an image exists (atomic writes: existing = complete); when overwriting,
        nothing counts as finished before `start` has cleaned the folder."""
        if self.overwrite and not self.started:
            return False
        return all((self.root / rel).is_file() for rel in rel_paths)

    def image_written(self, index: int) -> None:
        if after_image_hook is not None:
            after_image_hook(index)

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.root / RUN_JSON, dict(manifest, task=self.task, resume_key=self.resume_key))


def diff_keys(old: dict, new: dict) -> list[str]:
    """`"name: run.json has A, now B"` for every key whose value differs (missing keys count)."""
    out = []
    for name in sorted(set(old) | set(new)):
        if old.get(name, "<absent>") != new.get(name, "<absent>"):
            out.append(f"{name}: run.json has {old.get(name, '<absent>')!r}, now {new.get(name, '<absent>')!r}")
    return out
