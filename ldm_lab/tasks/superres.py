"""Super-resolution evaluation: the LDM-BSR 4x model on the LR image at its native size (upstream notebook).

The LR image in [-1, 1] is the conditioning (Identity cond stage), concatenated to a latent of its own size
(f = 4: HR = 4 x LR); DDIM with eta 1 as upstream's notebook; decode. Large images are sampled in
overlapping latent tiles blended by border weights (upstream split-input: 128/64) or whole, per `tile`.
LR sides are padded (replicate) to the UNet's multiple and the output cropped back. `scale` 4 is native;
`scale` 2 is done explicitly: model x4, then MATLAB-style antialiased bicubic x1/2 to the HR size, and is
labelled so. A bicubic baseline upscales the same LR. Metrics: PSNR/SSIM on BT.601 Y (and RGB) with a
border crop of `scale` pixels, LPIPS, Canny edge IoU, FID/KID and precision/recall.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ldm_lab.data import SuperResolutionDataset, bicubic_downscale
from ldm_lab.data.images import image_size
from ldm_lab.device import dtype_name, parse_device, parse_dtype
from ldm_lab.metrics import edge_iou, psnr_ssim
from ldm_lab.metrics.image_quality import protocol_name
from ldm_lab.metrics.result import PER_SAMPLE_COLUMNS, MetricUnavailable
from ldm_lab.results import SampleRecord, sr_sample_names
from ldm_lab.tasks import engine, legacy, measure
from ldm_lab.tasks.images import read_png, resize_antialiased, to_uint8
from ldm_lab.tasks.inputs import (
    check_pairing,
    dataset_info,
    file_hash,
    load_task_model,
    open_dataset,
    require_file,
    task_config,
)
from ldm_lab.tasks.run_dir import RunFolder
from ldm_lab.tasks.sampling import decode_images, sample_batch
from ldm_lab.tasks.tiling import tiled_eps_model

TILE_MODES = ("auto", "tiled", "whole")
N_SAMPLE_RESULTS = 10  # sample_results/result_NNN_{sr,hr}.png for the first pairs, as the older script


def _lr_size(data: SuperResolutionDataset, i: int) -> tuple[int, int]:
    paths = data.paths(i)
    if "lr" in paths:
        return image_size(paths["lr"])
    w, h = image_size(paths["hr"])
    return w // data.scale, h // data.scale


def _plan(data: SuperResolutionDataset, seed: int) -> list[engine.Planned]:
    plan = []
    for i, sample_id in enumerate(data.ids):
        n = f"{i + 1:05d}"
        inputs = {"reference": f"references/hr_{n}.png", "input": f"inputs/lr_{n}.png"}
        record = SampleRecord(i, sample_id, seed + i, {"result": f"sr/sr_{n}.png", **inputs})
        baseline = SampleRecord(i, sample_id, seed + i, {"result": f"baseline/bicubic_{n}.png", **inputs})
        extra = list(sr_sample_names(i)) if i < N_SAMPLE_RESULTS else []
        outputs = [*inputs.values(), baseline.files["result"], *extra, record.files["result"]]
        plan.append(engine.Planned(record, outputs, _lr_size(data, i), baseline))
    return plan


def _measure(folder: RunFolder, plan: list[engine.Planned], models: measure.MetricModels, *, scale: int,
             fid: bool, lpips: bool, real_key: str, progress: bool):
    """Per-sample and distribution metrics of the SR results and of the bicubic baseline, from the PNGs."""
    lp = models.get("lpips") if lpips else None
    wanted = {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "edge_iou"} | ({"lpips"} if lpips else set())
    columns = [c for c in PER_SAMPLE_COLUMNS if c in wanted]
    unavailable = {"lpips": models.reasons["lpips"]} if lpips and lp is None else {}
    y, rgb = protocol_name(channel="y", border=scale), protocol_name(channel="rgb", border=scale)
    protocols = {"psnr_y": y, "ssim_y": y, "psnr_rgb": rgb, "ssim_rgb": rgb,
                 "edge_iou": "canny(Y/255, sigma=1.0, skimage default thresholds), IoU"}
    if lp is not None:
        protocols["lpips"] = f"{lp.protocol},whole image"

    def compute(record: SampleRecord):
        res, ref = read_png(folder.root, record.files["result"]), read_png(folder.root, record.files["reference"])
        values, reasons = {}, {}
        for channel in ("y", "rgb"):
            try:
                values.update(psnr_ssim(res, ref, channel=channel, border=scale))
            except MetricUnavailable as err:
                reasons.update({f"psnr_{channel}": str(err), f"ssim_{channel}": str(err)})
        measure.guarded(lambda: edge_iou(res, ref), "edge_iou", values, reasons)
        if lp is not None:
            from ldm_lab.metrics.lpips_metric import lpips_pair

            measure.guarded(lambda: lpips_pair(lp, res, ref), "lpips", values, reasons)
        return values, reasons

    notes = {"model": "fake = super-resolved images, real = the HR images",
             "baseline": "fake = bicubic upscaled images, real = the HR images"}
    return columns, measure.model_and_baseline(folder, plan, compute, columns, protocols=protocols,
                                               unavailable=unavailable, models=models, real_key=real_key, fid=fid,
                                               notes=notes, progress=progress)


def run_superres(*, dataset_path: str = "data/demo/super-resolution_dataset", output_dir: str = "reports/demo/superres",
                 config: str = "configs/tiny/superres.yaml", checkpoint: str = "models/demo/superres.ckpt",
                 scale: int = 4, max_samples: int = 0, skip_invalid: bool = False, steps: int = 100, sampler: str = "ddim", eta: float = 1.0,
                 seed: int = 0, batch_size: int = 4, device: str = "auto", dtype: str = "fp32", tile: str = "auto",
                 tile_size: int = 128, tile_stride: int = 64, batching: str = "per-image", channels_last: bool = False,
                 compile_unet: bool = False, write_workers: int = 2, overwrite: bool = False, fid: bool = True,
                 lpips: bool = True, metric_weights: dict | None = None, progress: bool = True,
                 check_only: bool = False):
    """Evaluate an LDM super-resolution checkpoint (upstream notebook conditioning; see the module docstring).

    Args:
        scale: 4 (the model's native factor) or 2 (model x4, then antialiased x1/2; labelled in results).
        tile: "auto" (tiles when the latent exceeds `tile_size`), "tiled" or "whole"; sizes in latent pixels.
        metric_weights: explicit metric network files ({"inception-fid": path, "vgg16": path, ...}).
        batching, channels_last, compile_unet, write_workers: throughput options (`engine.check_speed`).
        skip_invalid: leave out samples whose files are unreadable or truncated (every image is decoded before
            the first is sampled) and list them in run.json and the report, instead of refusing the dataset.
        check_only: validate everything (arguments, config/checkpoint pairing, every input decoded, the
            resume rule) and return a `RunCheck` without writing anything; the CLI does this before a kernel.
    """
    parameters = engine.recorded_parameters(locals())
    # 1. Check arguments and the model family.
    cfg = task_config("superres", config, "config")
    engine.check_sampling(sampler=sampler, steps=steps, eta=eta, seed=seed, batch_size=batch_size,
                          max_samples=max_samples, num_timesteps=cfg.timesteps)
    factor = cfg.first_stage.downsample_factor  # LR size == latent size: the model's own SR factor
    if scale not in (2, 4) or scale > factor:
        raise ValueError(f"`scale` must be 2 or 4 (at most the model's factor {factor}), got {scale!r}")
    if tile not in TILE_MODES:
        raise ValueError(f"`tile` must be one of {list(TILE_MODES)}, got {tile!r}")
    multiple = 2 ** (len(cfg.unet.channel_mult) - 1)
    engine.check_int(tile_size, "tile_size", multiple)
    if tile_size % multiple:
        raise ValueError(f"`tile_size` must be a multiple of {multiple} for this UNet, got {tile_size}")
    if isinstance(tile_stride, bool) or not isinstance(tile_stride, int) or not 0 < tile_stride <= tile_size:
        raise ValueError(f"`tile_stride` must be an integer in [1, tile_size={tile_size}], got {tile_stride!r}")
    speed = engine.check_speed(batching=batching, channels_last=channels_last, compile_unet=compile_unet,
                               write_workers=write_workers)
    per_image = batching == "per-image"
    dev = parse_device(device)
    dt = parse_dtype(dtype, dev)
    method = (f"x{factor} LDM on the native LR" if scale == factor else
              f"x{scale} = LDM x{factor} on the native LR, then antialiased bicubic x{scale}/{factor} to the HR size")
    # 2. Dataset and plan.
    data = open_dataset(lambda: SuperResolutionDataset(dataset_path, scale=scale, max_samples=max_samples or None,
                                                               verify="full", skip_invalid=skip_invalid),
                        "dataset_path", dataset_path)
    plan = _plan(data, seed)
    engine.attach_inputs(plan, data)
    dataset = dataset_info(data, dataset_path)
    model_info = {"config": str(config), "config_sha256": file_hash(config), "checkpoint": str(checkpoint),
                  "checkpoint_sha256": file_hash(require_file(checkpoint, "checkpoint"))}
    if check_only:  # a real run finds a misfit when it loads the model, before the folder is touched
        check_pairing(config, checkpoint, "config", "checkpoint")
    key = {"config_sha256": model_info["config_sha256"], "checkpoint_sha256": model_info["checkpoint_sha256"],
           "sampler": sampler, "steps": steps, "eta": float(eta), "seed": seed, "scale": scale, "tile": tile,
           "tile_size": tile_size, "tile_stride": tile_stride, "dataset_selection": data.selection_params(),
           "device_type": dev.type, "dtype": dtype_name(dt), **speed}
    # 3. Output folder.
    folder = RunFolder(output_dir, "superres", key, overwrite=overwrite)
    folder.prepare(plan, fingerprint=dataset["fingerprint"])
    if check_only:
        return engine.RunCheck.of(folder, plan, data)
    tiled = lambda w, h: tile == "tiled" or (tile == "auto" and max(_pad(w, multiple), _pad(h, multiple)) > tile_size)
    sampling = {"sampler": sampler, "steps": steps, "eta": float(eta), "guidance_scale": None, "scale": scale,
                "batching": batching, "method": method, "tile": tile, "tile_size": tile_size, "tile_stride": tile_stride,
                "tiled_samples": [p.record.index for p in plan if tiled(*p.group)],
                "padding": f"LR padded (replicate) to a multiple of {multiple}, output cropped",
                "baseline": "PIL bicubic upscaling of the LR to the HR size"}
    manifest = engine.base_manifest(folder, parameters=parameters, model_info=model_info, dataset=dataset,
                                    sampling=sampling, seed=seed, device=dev, dtype=dtype_name(dt), plan=plan)
    # 4. Load the model if an image is unfinished, start the folder, sample.
    ldm_model = engine.start_run(folder, plan, manifest, lambda: load_task_model(
        "superres", config, checkpoint, config_arg="config", ckpt_arg="checkpoint", device=dev, dtype=dt,
        channels_last=channels_last, compile_unet=compile_unet))

    def produce(batch: list[engine.Planned], save, done) -> None:
        samples = [data[p.record.index] for p in batch]
        lr = torch.stack([s.lr for s in samples])
        h, w = lr.shape[-2:]
        cond = F.pad(lr * 2 - 1, (0, _pad(w, multiple) - w, 0, _pad(h, multiple) - h), mode="replicate")
        use_tiles = tiled(w, h)
        eps_model = tiled_eps_model(ldm_model.apply_model, tile=tile_size, stride=tile_stride) if use_tiles else None
        z = sample_batch(ldm_model, seeds=[p.record.seed for p in batch], shape=(ldm_model.latent_channels, *cond.shape[-2:]),
                         cond={"concat": cond}, sampler=sampler, steps=steps, eta=eta, autocast=dt, eps_model=eps_model,
                         per_image=per_image)
        decoded = decode_images(ldm_model, z, autocast=dt, tile=tile_size if use_tiles else None, stride=tile_stride,
                                per_image=per_image)
        for p, s, sr in zip(batch, samples, decoded, strict=True):
            hr, lr_image = to_uint8(s.hr), to_uint8(s.lr)
            sr = sr[: h * factor, : w * factor]
            if scale != factor:
                sr = np.asarray(bicubic_downscale(Image.fromarray(sr), factor // scale))
            save(p.record.files["reference"], hr)
            save(p.record.files["input"], lr_image)
            save(p.baseline.files["result"], resize_antialiased(lr_image, (hr.shape[1], hr.shape[0])))
            if p.record.index < N_SAMPLE_RESULTS:
                names = sr_sample_names(p.record.index)
                save(names[1], hr)
                save(names[0], sr)
            save(p.record.files["result"], sr)
            done(p)

    manifest["timings"].update(engine.generate(folder, plan, produce, batch_size=batch_size, progress=progress,
                                               desc=f"super-resolution x{scale}", write_workers=write_workers))
    if not engine.measured_here():  # sharded under torchrun: rank 0 measures afterwards, single-process
        return None
    # 5. Measure from the PNGs (streamed), model and baseline alike.
    start = time.perf_counter()
    real_key = measure.reference_key(dataset["fingerprint"], "super-resolution HR")
    columns, outcome = _measure(folder, plan, measure.MetricModels(dev, metric_weights), scale=scale, fid=fid,
                                lpips=lpips, real_key=real_key, progress=progress)
    manifest["timings"]["metrics_seconds"] = round(time.perf_counter() - start, 3)
    # 6. Result files.
    result = engine.finish(folder, manifest, plan, method=method, columns=columns, model=outcome["model"],
                           baseline=outcome["baseline"])
    legacy.write_superres(folder, scale, outcome["model"][1], len(plan), data.root.name, method,
                          manifest["timings"]["started_at"])
    return result


def _pad(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
