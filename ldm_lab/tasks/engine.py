"""What the three runners share: argument checks, the resumable batch loop, and writing the result files."""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from tqdm.auto import tqdm

from ldm.samplers import SAMPLERS, ddim_timesteps
from ldm_lab import distributed
from ldm_lab.metrics.result import MetricResult
from ldm_lab.results import (
    METRICS_JSON,
    PER_SAMPLE_BASELINE_CSV,
    PER_SAMPLE_CSV,
    RunResult,
    SampleRecord,
    plain,
    write_json,
    write_per_sample_csv,
)
from ldm_lab.tasks.run_dir import RunFolder
from ldm_lab.tasks.sampling import BATCHING
from ldm_lab.tasks.writer import ImageWriter


def recorded_parameters(arguments: dict) -> dict:
    """A runner's arguments as run.json records them (`check_only` changes nothing and is left out)."""
    return {k: v for k, v in arguments.items() if k != "check_only"}


@dataclass
class RunCheck:
    """What `check_only=True` found: everything is valid, and this is what the run would do."""

    output_dir: str
    planned: int
    finished: int
    resumed: bool
    skipped: list

    @classmethod
    def of(cls, folder: RunFolder, plan: list[Planned], data) -> RunCheck:
        finished = sum(folder.finished(p.outputs) for p in plan) if folder.resumed else 0
        return cls(str(folder.root), len(plan), finished, folder.resumed, list(data.skipped))

    def __str__(self) -> str:
        state = (f"resuming: {self.finished} of {self.planned} images finished" if self.resumed
                 else f"new run of {self.planned} images")
        skipped = f"; {len(self.skipped)} invalid input file(s) skipped" if self.skipped else ""
        return f"{self.output_dir}: {state}{skipped}"


def check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def check_sampling(*, sampler: str, steps: int, eta: float, seed: int, batch_size: int, max_samples: int,
                   num_timesteps: int, steps_name: str = "steps") -> None:
    """Fail early on sampler options (STYLE 8): names, ranges, and step counts the schedule refuses."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    check_int(steps, steps_name, 1)
    try:
        ddim_timesteps(steps, num_timesteps)
    except ValueError as err:
        raise ValueError(f"`{steps_name}`: {err}") from None
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not 0 <= eta < float("inf"):
        raise ValueError(f"`eta` must be a finite number >= 0, got {eta!r}")
    if sampler != "ddim" and eta != 0:
        raise ValueError(f"`eta` must be 0 for sampler {sampler!r} (only ddim is stochastic), got {eta}")
    check_int(seed, "seed", 0)
    check_int(batch_size, "batch_size", 1)
    check_int(max_samples, "max_samples", 0)


# The settings under which runs computed before these options existed: left out of the resume key.
SPEED_DEFAULTS = {"batching": "per-image", "channels_last": False, "compile_unet": False}


def check_speed(*, batching: str, channels_last: bool, compile_unet: bool, write_workers: int) -> dict:
    """Check the runners' throughput options; returns those that can change pixels and differ from the
    defaults, for the resume key (so runs with the defaults, older folders included, keep one key).

    batching: "per-image" (files never depend on batch size, resume or world size) or "batched" (one
        network call per batch, the throughput path for GPUs; pixels can move by float rounding); see
        `ldm_lab.tasks.sampling`.
    channels_last / compile_unet: `ldm.optimize` (float-rounding changes only).
    write_workers: threads that encode and write the PNGs while the next batch samples (0: inline); never
        changes a byte (`ldm_lab.tasks.writer`).
    """
    if batching not in BATCHING:
        raise ValueError(f"`batching` must be one of {list(BATCHING)}, got {batching!r}")
    for name, value in (("channels_last", channels_last), ("compile_unet", compile_unet)):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` must be True or False, got {value!r}")
    check_int(write_workers, "write_workers", 0)
    chosen = {"batching": batching, "channels_last": channels_last, "compile_unet": compile_unet}
    return {name: value for name, value in chosen.items() if value != SPEED_DEFAULTS[name]}


@dataclass
class Planned:
    """One image to produce: its record, every file it writes (relative; the result last), its batch group."""

    record: SampleRecord
    outputs: list[str]
    group: Hashable = None
    baseline: SampleRecord | None = None
    inputs_sha256: str | None = None  # what the image is made from (`FolderDataset.sample_digest`)


def attach_inputs(plan: list[Planned], data) -> None:
    """Record each image's input digest (content of its dataset files, and its caption) for the resume rule."""
    for p in plan:
        p.inputs_sha256 = data.sample_digest(p.record.index)


def batches(items: list[Planned], size: int):
    """Consecutive items of one group, at most `size` per batch (images of one size share a batch)."""
    batch: list[Planned] = []
    for item in items:
        if batch and (len(batch) == size or batch[0].group != item.group):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def needs_sampling(folder: RunFolder, plan: list[Planned]) -> bool:
    """Whether any image of this rank's shard is still to be produced (then the model is loaded, before the
    folder is touched); single-process, the shard is the whole plan."""
    shard = distributed.current()
    return any(shard.owns(p.record.index) and not folder.finished(p.outputs) for p in plan)


def generate(folder: RunFolder, plan: list[Planned], produce: Callable[[list[Planned], Callable, Callable], None],
             *, batch_size: int, progress: bool, desc: str, write_workers: int = 0) -> dict:
    """Produce every unfinished image; `produce(batch, save, done)` writes each file with `save(rel, image)`
    and calls `done(item)` per image. Files are written by `write_workers` threads (`ldm_lab.tasks.writer`);
    an image counts as done once its files are on disk.

    Sharded (`ldm_lab.distributed`), this rank produces the images of its shard, then waits for every rank
    (a collective) and the session (world size, images per rank) is recorded in run.json by rank 0.
    """
    shard = distributed.current()
    mine = [p for p in plan if shard.owns(p.record.index)]
    pending = [p for p in mine if not folder.finished(p.outputs)]
    label = f"{desc} [rank {shard.rank}/{shard.world_size}]" if shard.sharded else desc
    bar = tqdm(total=len(mine), initial=len(mine) - len(pending), desc=label, unit="img", disable=not progress)
    writer = ImageWriter(folder.root, workers=write_workers)

    def finished(item: Planned) -> None:
        bar.update(1)
        folder.image_written(item.record.index)

    start = time.perf_counter()
    try:
        with writer:
            for batch in batches(pending, batch_size):
                produce(batch, writer.save, lambda item: writer.then(lambda: finished(item)))
    finally:
        bar.close()
    seconds = round(time.perf_counter() - start, 3)
    per_rank = distributed.gather({"images": len(pending), "seconds": seconds})
    generated = sum(r["images"] for r in per_rank)
    if generated:
        folder.record_session({"world_size": shard.world_size, "backend": shard.backend, "images": generated,
                               "images_per_rank": [r["images"] for r in per_rank],
                               "seconds_per_rank": [r["seconds"] for r in per_rank], "finished_at": now()})
    return {"images_generated": generated, "images_resumed": len(plan) - generated,
            "sampling_seconds": max(r["seconds"] for r in per_rank)}


def measured_here() -> bool:
    """False on every rank of a sharded session: the runner returns None after sampling, and the metrics
    are computed single-process from the PNGs (module doc of `ldm_lab.distributed`)."""
    return not distributed.current().sharded


def start_run(folder: RunFolder, plan: list[Planned], manifest: dict, load):
    """Load the model (`load()`) only if this rank still has images to make, before the folder is touched;
    record its load report in the manifest and start the folder. Returns the model or None."""
    model = None
    if needs_sampling(folder, plan):
        start = time.perf_counter()
        model = load()
        manifest["model"]["load_report"] = model.load_report.to_dict()
        manifest["timings"]["load_seconds"] = round(time.perf_counter() - start, 3)
    folder.start(manifest)
    return model


def peak_rss_mib() -> float | None:
    """This process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def base_manifest(folder: RunFolder, *, parameters: dict, model_info: dict, dataset: dict, sampling: dict, seed: int,
                  device, dtype: str, plan: list[Planned]) -> dict:
    """run.json at the start of a run (status "running"); `finish` completes it. The model entry keeps
    what an earlier run of this folder recorded (e.g. its load report) under the new `model_info`."""
    model = dict(folder.previous_manifest().get("model", {}), **model_info)
    from ldm_lab.device import describe_device
    from ldm_lab.tasks.inputs import environment

    return {"status": "running", "parameters": parameters, "model": model, "dataset": dataset,
            "sampling": sampling, "seeds": {"base": seed, "rule": "image i (0-based evaluation index) uses seed + i"},
            "device": dict(describe_device(device), dtype=dtype), "environment": environment(),
            "timings": {"started_at": now()}, **manifest_samples(plan)}


def manifest_samples(plan: list[Planned]) -> dict:
    out = {"samples": [dict(p.record.to_dict(), inputs_sha256=p.inputs_sha256) for p in plan]}
    if any(p.baseline is not None for p in plan):
        out["baseline_samples"] = [p.baseline.to_dict() for p in plan if p.baseline is not None]
    return out


def results_dict(summary: dict[str, MetricResult]) -> dict:
    return {name: result.to_dict() for name, result in summary.items()}


def finish(folder: RunFolder, manifest: dict, plan: list[Planned], *, method: str, columns: list[str],
           model: tuple[list[dict], dict[str, MetricResult]],
           baseline: tuple[list[dict], dict[str, MetricResult]] | None = None) -> RunResult:
    """Write per_sample(.csv, _baseline.csv), metrics.json (no timings) and the final run.json."""
    rows, summary = model
    write_per_sample_csv(folder.path(PER_SAMPLE_CSV), rows, columns)
    metrics = {"task": folder.task, "method": method, "model": results_dict(summary), "baseline": {}}
    if baseline is not None:
        write_per_sample_csv(folder.path(PER_SAMPLE_BASELINE_CSV), baseline[0], columns)
        metrics["baseline"] = results_dict(baseline[1])
    write_json(folder.path(METRICS_JSON), metrics)
    manifest = dict(manifest, status="complete")
    manifest["timings"] = dict(manifest.get("timings", {}), finished_at=now(), peak_rss_mib=peak_rss_mib())
    folder.write_manifest(manifest)
    run = plain(dict(manifest, task=folder.task, resume_key=folder.resume_key))
    return RunResult(folder.root, folder.task, run, plain(metrics), [p.record for p in plan],
                     [p.baseline for p in plan if p.baseline is not None])
