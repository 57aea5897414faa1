"""Inpainting evaluation: LDM inpainting (Rombach et al. 2022) with upstream `scripts/inpaint.py` conditioning.

Per image at the working resolution: masked = (1 - mask) · image; image, mask and masked image mapped to
[-1, 1] (the mask channel is ±1); c = first-stage encoding of the masked image (VQ: before quantisation)
concatenated with the mask resized to the latent size (nearest); DDIM; decode; composite = original
outside the hole, prediction inside. A classical baseline (`skimage.restoration.inpaint_biharmonic`) fills
the same holes. Metrics: PSNR/SSIM whole image and in the hole, LPIPS whole and hole box, edge consistency
(straddling band and the older outer ring), FID/KID of composites vs originals.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage.restoration import inpaint_biharmonic

from ldm_lab.data import InpaintingDataset
from ldm_lab.data.images import image_size
from ldm_lab.device import dtype_name, parse_device, parse_dtype
from ldm_lab.metrics import edge_consistency, edge_consistency_outer_ring, inpainting_region_metrics
from ldm_lab.metrics.image_quality import protocol_name
from ldm_lab.metrics.result import PER_SAMPLE_COLUMNS
from ldm_lab.results import SampleRecord, inpainted_name
from ldm_lab.tasks import engine, legacy, measure
from ldm_lab.tasks.images import read_mask, read_png, to_uint8
from ldm_lab.tasks.inputs import (
    check_pairing,
    dataset_info,
    file_hash,
    load_task_model,
    open_dataset,
    require_file,
    size_multiple,
    task_config,
)
from ldm_lab.tasks.run_dir import RunFolder
from ldm_lab.tasks.sampling import decode_images, encode_condition, sample_batch

LPIPS_COLUMNS = ["lpips", "lpips_hole_bbox"]


def parse_resolution(resolution, multiple: int) -> int | None:
    """"native" -> None; an int (or its string) that is a multiple of `multiple` -> that int."""
    if isinstance(resolution, str) and resolution.strip().lower() == "native":
        return None
    try:
        value = int(resolution)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(resolution, bool) or value < multiple or value % multiple:
        raise ValueError(f"`resolution` must be 'native' or a positive multiple of {multiple} for this model "
                         f"(first-stage factor x UNet downsampling), got {resolution!r}")
    return value


def _check_native_sizes(data: InpaintingDataset, multiple: int) -> list[tuple[int, int]]:
    sizes = [image_size(data.paths(i)["image"]) for i in range(len(data))]
    bad = [f"{data.paths(i)['image'].name} ({w}x{h})" for i, (w, h) in enumerate(sizes) if w % multiple or h % multiple]
    if bad:
        raise ValueError(f"`resolution`='native' needs image sides that are multiples of {multiple} for this model; "
                         f"not so: {', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}; use resolution=512")
    return sizes


def _plan(data: InpaintingDataset, seed: int, sizes) -> list[engine.Planned]:
    plan = []
    for i, sample_id in enumerate(data.ids):
        n = f"{i + 1:05d}"
        inputs = {"reference": f"inputs/original_{n}.png", "input": f"inputs/masked_{n}.png",
                  "mask": f"inputs/mask_{n}.png"}
        record = SampleRecord(i, sample_id, seed + i, {"result": inpainted_name(i), **inputs})
        baseline = SampleRecord(i, sample_id, seed + i, {"result": f"baseline/biharmonic_{n}.png", **inputs})
        outputs = [*inputs.values(), baseline.files["result"], record.files["result"]]
        plan.append(engine.Planned(record, outputs, sizes[i] if sizes else None, baseline))
    return plan


def _measure(folder: RunFolder, plan: list[engine.Planned], models: measure.MetricModels, *, fid: bool,
             lpips: bool, where: str, real_key: str, progress: bool):
    """Per-sample and distribution metrics of the composites and of the baseline fills, from the PNGs."""
    lp = models.get("lpips") if lpips else None
    columns = [c for c in PER_SAMPLE_COLUMNS if c in {"psnr_rgb", "ssim_rgb", "psnr_hole", "ssim_hole_bbox",
                                                      "edge_consistency", "edge_consistency_outer_ring"}
               or (lpips and c in LPIPS_COLUMNS)]
    unavailable = {c: models.reasons["lpips"] for c in LPIPS_COLUMNS} if lpips and lp is None else {}
    rgb = protocol_name(channel="rgb", border=0)
    protocols = {"psnr_rgb": f"{rgb},whole image", "ssim_rgb": f"{rgb},whole image",
                 "psnr_hole": f"{rgb},hole pixels only", "ssim_hole_bbox": f"{rgb},hole bounding box",
                 "edge_consistency": "sobel-bt601,clip255,band=dilate(hole,5x5)-erode(hole,5x5)",
                 "edge_consistency_outer_ring": "sobel-bt601,clip255,band=dilate(hole,5x5)-hole (older scripts)"}
    if lp is not None:
        protocols.update(lpips=f"{lp.protocol},whole image", lpips_hole_bbox=f"{lp.protocol},hole bounding box")

    def compute(record: SampleRecord):
        res, ref = read_png(folder.root, record.files["result"]), read_png(folder.root, record.files["reference"])
        hole = read_mask(folder.root, record.files["mask"])
        values, reasons = inpainting_region_metrics(res, ref, hole)
        measure.guarded(lambda: edge_consistency(res, ref, hole), "edge_consistency", values, reasons)
        measure.guarded(lambda: edge_consistency_outer_ring(res, ref, hole), "edge_consistency_outer_ring",
                        values, reasons)
        if lp is not None:
            from ldm_lab.metrics.lpips_metric import lpips_hole_bbox, lpips_pair

            measure.guarded(lambda: lpips_pair(lp, res, ref), "lpips", values, reasons)
            measure.guarded(lambda: lpips_hole_bbox(lp, res, ref, hole), "lpips_hole_bbox", values, reasons)
        return values, reasons

    notes = {"model": f"fake = composites, real = the originals at {where} (paired sets)",
             "baseline": f"fake = biharmonic fills, real = the originals at {where} (paired sets)"}
    return columns, measure.model_and_baseline(folder, plan, compute, columns, protocols=protocols,
                                               unavailable=unavailable, models=models, real_key=real_key, fid=fid,
                                               notes=notes, precision_recall=False, progress=progress)


def inpainting_concat(encode, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The UNet's concat conditioning (upstream scripts/inpaint.py) for images in [0, 1] and masks 1 in the hole:
    c = encode((1 - mask) * image mapped to [-1, 1]) beside the mask (+-1) resized to c's size, nearest."""
    c = encode((1 - mask) * image * 2 - 1)
    return torch.cat([c, F.interpolate(mask * 2 - 1, size=c.shape[-2:])], dim=1)


def biharmonic_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The baseline: `skimage.restoration.inpaint_biharmonic` of uint8 RGB over the hole -> uint8 RGB."""
    filled = inpaint_biharmonic(image.astype(np.float64) / 255.0, hole, channel_axis=-1)
    return to_uint8(torch.from_numpy(filled).permute(2, 0, 1))


def run_inpainting(*, data_dir: str = "data/demo/inpainting_dataset", output_dir: str = "reports/demo/inpainting",
                   config: str = "configs/tiny/inpainting.yaml", model: str = "models/demo/inpainting.ckpt",
                   max_samples: int = 0, skip_invalid: bool = False, steps: int = 50, sampler: str = "ddim", eta: float = 0.0, seed: int = 0,
                   batch_size: int = 4, device: str = "auto", dtype: str = "fp32", resolution: str = "512",
                   batching: str = "per-image", channels_last: bool = False, compile_unet: bool = False,
                   write_workers: int = 2, overwrite: bool = False, fid: bool = True, lpips: bool = True,
                   metric_weights: dict | None = None, progress: bool = True, check_only: bool = False):
    """Evaluate an LDM inpainting checkpoint (upstream inpaint.py conditioning; see the module docstring).

    Args:
        resolution: working size, "512" (LDM paper's Places protocol; image bicubic-antialiased, mask
            nearest) or "native" (sides must be multiples of the model's factor).
        metric_weights: explicit metric network files ({"inception-fid": path, "alexnet": path, ...}).
        batching, channels_last, compile_unet, write_workers: throughput options (`engine.check_speed`).
        skip_invalid: leave out samples whose files are unreadable or truncated (every image is decoded before
            the first is sampled) and list them in run.json and the report, instead of refusing the dataset.
        check_only: validate everything (arguments, config/checkpoint pairing, every input decoded, the
            resume rule) and return a `RunCheck` without writing anything; the CLI does this before a kernel.
    Returns a `ldm_lab.results.RunResult`; outputs as design §4 (resumable, see `ldm_lab.tasks.run_dir`).
    """
    parameters = engine.recorded_parameters(locals())
    # 1. Check arguments and the model family (before anything heavy).
    cfg = task_config("inpainting", config, "config")
    engine.check_sampling(sampler=sampler, steps=steps, eta=eta, seed=seed, batch_size=batch_size,
                          max_samples=max_samples, num_timesteps=cfg.timesteps)
    size = parse_resolution(resolution, size_multiple(cfg))
    speed = engine.check_speed(batching=batching, channels_last=channels_last, compile_unet=compile_unet,
                               write_workers=write_workers)
    per_image = batching == "per-image"
    dev = parse_device(device)
    dt = parse_dtype(dtype, dev)
    # 2. Dataset (lazy reader) and the plan: files and seed of every image.
    data = open_dataset(lambda: InpaintingDataset(data_dir, max_samples=max_samples or None, resolution=size,
                                                  verify="full", skip_invalid=skip_invalid), "data_dir", data_dir)
    sizes = _check_native_sizes(data, size_multiple(cfg)) if size is None else None
    plan = _plan(data, seed, sizes)
    engine.attach_inputs(plan, data)
    dataset = dataset_info(data, data_dir)
    model_info = {"config": str(config), "config_sha256": file_hash(config), "checkpoint": str(model),
                  "checkpoint_sha256": file_hash(require_file(model, "model"))}
    if check_only:  # a real run finds a misfit when it loads the model, before the folder is touched
        check_pairing(config, model, "config", "model")
    key = {"config_sha256": model_info["config_sha256"], "checkpoint_sha256": model_info["checkpoint_sha256"],
           "sampler": sampler, "steps": steps, "eta": float(eta), "seed": seed,
           "resolution": "native" if size is None else size, "dataset_selection": data.selection_params(),
           "device_type": dev.type, "dtype": dtype_name(dt), **speed}
    # 3. Output folder: resume or refuse.
    folder = RunFolder(output_dir, "inpainting", key, overwrite=overwrite)
    folder.prepare(plan, fingerprint=dataset["fingerprint"])
    if check_only:
        return engine.RunCheck.of(folder, plan, data)
    sampling = {"sampler": sampler, "steps": steps, "eta": float(eta), "guidance_scale": None, "batching": batching,
                "resolution": "native" if size is None else size,
                "conditioning": "upstream scripts/inpaint.py: masked = (1-mask)*image; mask ±1; "
                                "c = cat(first-stage encode(masked), nearest-resized mask)",
                "composite": "original outside the hole, prediction inside",
                "baseline": "skimage.restoration.inpaint_biharmonic (channel_axis=-1)"}
    manifest = engine.base_manifest(folder, parameters=parameters, model_info=model_info, dataset=dataset,
                                    sampling=sampling, seed=seed, device=dev, dtype=dtype_name(dt), plan=plan)
    # 4. Load the model if an image is unfinished, start the folder, sample; PNGs are written one by one.
    ldm_model = engine.start_run(folder, plan, manifest, lambda: load_task_model(
        "inpainting", config, model, config_arg="config", ckpt_arg="model", device=dev, dtype=dt, channels_last=channels_last,
        compile_unet=compile_unet))

    def produce(batch: list[engine.Planned], save, done) -> None:
        samples = [data[p.record.index] for p in batch]
        image = torch.stack([s.image for s in samples])
        mask = torch.stack([s.mask for s in samples])
        concat = inpainting_concat(functools.partial(encode_condition, ldm_model, autocast=dt, per_image=per_image),
                                   image, mask)
        h, w = image.shape[-2:]
        f = ldm_model.downsample_factor
        z = sample_batch(ldm_model, seeds=[p.record.seed for p in batch], shape=(ldm_model.latent_channels, h // f, w // f),
                         cond={"concat": concat}, sampler=sampler, steps=steps, eta=eta, autocast=dt,
                         per_image=per_image)
        predictions = decode_images(ldm_model, z, autocast=dt, per_image=per_image)
        for p, s, pred, m in zip(batch, samples, predictions, mask, strict=True):
            original, hole = to_uint8(s.image), m[0].numpy() > 0.5
            files = p.record.files
            save(files["reference"], original)
            save(files["input"], to_uint8((1 - m) * s.image))
            save(files["mask"], hole)
            save(p.baseline.files["result"], functools.partial(biharmonic_fill, original, hole))  # on a writer thread
            save(files["result"], np.where(hole[..., None], pred, original))
            done(p)

    manifest["timings"].update(engine.generate(folder, plan, produce, batch_size=batch_size, progress=progress,
                                               desc="inpainting", write_workers=write_workers))
    if not engine.measured_here():  # sharded under torchrun: rank 0 measures afterwards, single-process
        return None
    # 5. Measure from the PNGs (streamed), model and baseline alike.
    start = time.perf_counter()
    where = f"{'native size' if size is None else f'{size}x{size}'}"
    real_key = measure.reference_key(dataset["fingerprint"], "inpainting originals", where)
    columns, outcome = _measure(folder, plan, measure.MetricModels(dev, metric_weights), fid=fid, lpips=lpips,
                                where=where, real_key=real_key, progress=progress)
    manifest["timings"]["metrics_seconds"] = round(time.perf_counter() - start, 3)
    # 6. Result files: per_sample(.csv, _baseline.csv), metrics.json, run.json, evaluation_results.json.
    method = f"LDM inpainting at {where}, {sampler} {steps} steps, eta {eta}; baseline: biharmonic"
    result = engine.finish(folder, manifest, plan, method=method, columns=columns, model=outcome["model"],
                           baseline=outcome["baseline"])
    settings = {"data_dir": str(data_dir), "output_dir": str(output_dir), "max_samples": max_samples,
                "steps": steps}
    minutes = (manifest["timings"]["sampling_seconds"] + manifest["timings"]["metrics_seconds"]) / 60
    legacy.write_inpainting(folder, outcome["model"][1], result.samples, settings, minutes)
    return result
