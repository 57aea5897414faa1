"""Text-to-image evaluation: LDM text-to-image with classifier-free guidance (upstream `scripts/txt2img.py`).

c = BERT embedding of the caption, uc = of ""; eps = eps_uc + scale · (eps_c - eps_uc) (one UNet call
per image for both); DDIM / PLMS / DPM-Solver++(2M); latent shape (channels, image_size, image_size) from
the config, decoded at image_size x f. Reference images are preprocessed to the generation size the way
the LDM papers do (centre square crop, antialiased bicubic resize; recorded in run.json and in the metric
protocols). Metrics: FID/KID and precision/recall against those references, CLIP score (raw cosine and
CLIPScore) of every generated image with its caption, and of every reference image (the baseline).
"""

from __future__ import annotations

import shutil
import time

import numpy as np
from PIL import Image

from ldm_lab.data import Text2ImgDataset
from ldm_lab.data.images import load_image
from ldm_lab.device import dtype_name, parse_device, parse_dtype
from ldm_lab.results import SampleRecord, generated_name
from ldm_lab.tasks import engine, legacy, measure
from ldm_lab.tasks.images import read_png
from ldm_lab.tasks.inputs import (
    check_pairing,
    dataset_info,
    file_hash,
    load_task_model,
    open_dataset,
    require_file,
    task_config,
    vocab_file,
)
from ldm_lab.tasks.run_dir import RunFolder
from ldm_lab.tasks.sampling import decode_images, sample_batch, text_condition

SCRATCH = ".unsaved"  # images outside the save_images_ratio subset live here until the metrics are done
CLIP_COLUMNS = ["clip_cosine", "clipscore"]


def center_square(image: Image.Image, size: int) -> np.ndarray:
    """Centre crop to the largest square, then PIL bicubic (antialiased when shrinking) to size x size."""
    w, h = image.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=None))


def saved_indices(n: int, ratio: float) -> set[int]:
    """The older script's rule: linspace(0, N-1, max(1, int(N * ratio))) as integers."""
    return {int(i) for i in np.linspace(0, n - 1, max(1, int(n * ratio)), dtype=int)}


def run_text2img(*, dataset_root: str = "data/demo/text2img_dataset", output_dir: str = "reports/demo/text2img",
                 config_path: str = "configs/tiny/txt2img.yaml", model_path: str = "models/demo/txt2img.ckpt",
                 max_samples: int = 0, skip_invalid: bool = False, ddim_steps: int = 50, scale: float = 7.5, sampler: str = "ddim",
                 eta: float = 0.0, seed: int = 0, batch_size: int = 4, save_images_ratio: float = 1.0,
                 tokenizer: str | None = None, caption_policy: str = "first", device: str = "auto",
                 dtype: str = "fp32", batching: str = "per-image", channels_last: bool = False,
                 compile_unet: bool = False, write_workers: int = 2, overwrite: bool = False, fid: bool = True,
                 clip: bool = True, clip_model: str = "ViT-B-32", clip_pretrained: str = "openai",
                 metric_weights: dict | None = None, progress: bool = True, check_only: bool = False):
    """Evaluate an LDM text-to-image checkpoint with classifier-free guidance (see the module docstring).

    Args:
        scale: guidance scale (7.5 as the older script; 1 disables guidance, as upstream).
        tokenizer: WordPiece vocab.txt (file or folder); None: a vocab.txt beside the config, else
            bert-base-uncased found offline by `ldm.tokenizer.resolve_vocab`.
        save_images_ratio: share of generated PNGs kept (the older script's rule); all are measured.
        metric_weights: explicit metric network files ({"inception-fid": path, "vgg16": path, "clip": path}).
        batching, channels_last, compile_unet, write_workers: throughput options (`engine.check_speed`).
        skip_invalid: leave out samples whose files are unreadable or truncated (every image is decoded before
            the first is sampled) and list them in run.json and the report, instead of refusing the dataset.
        check_only: validate everything (arguments, config/checkpoint pairing, every input decoded, the
            resume rule) and return a `RunCheck` without writing anything; the CLI does this before a kernel.
    """
    parameters = engine.recorded_parameters(locals())
    # 1. Check arguments and the model family.
    cfg = task_config("text2img", config_path, "config_path")
    engine.check_sampling(sampler=sampler, steps=ddim_steps, eta=eta, seed=seed, batch_size=batch_size,
                          max_samples=max_samples, num_timesteps=cfg.timesteps, steps_name="ddim_steps")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < float("inf"):
        raise ValueError(f"`scale` (guidance) must be a finite number > 0, got {scale!r}")
    if isinstance(save_images_ratio, bool) or not isinstance(save_images_ratio, int | float) \
            or not 0 < save_images_ratio <= 1:
        raise ValueError(f"`save_images_ratio` must be in (0, 1], got {save_images_ratio!r}")
    speed = engine.check_speed(batching=batching, channels_last=channels_last, compile_unet=compile_unet,
                               write_workers=write_workers)
    per_image = batching == "per-image"
    vocab = vocab_file(tokenizer, require_file(config_path, "config_path"))
    dev = parse_device(device)
    dt = parse_dtype(dtype, dev)
    size = cfg.image_size * cfg.first_stage.downsample_factor
    # 2. Dataset, plan and reference preprocessing.
    data = open_dataset(lambda: Text2ImgDataset(dataset_root, caption_policy=caption_policy,
                                                max_samples=max_samples or None, verify="full",
                                                skip_invalid=skip_invalid), "dataset_root", dataset_root)
    texts, saved = data.texts, saved_indices(len(data), save_images_ratio)
    plan = []
    for i, sample_id in enumerate(data.ids):
        reference = f"references/real_{i + 1:05d}.png"
        image = generated_name(i) if i in saved else f"{SCRATCH}/{generated_name(i)}"
        files = {"result": image, "reference": reference} if i in saved else {"reference": reference}
        record = SampleRecord(i, sample_id, seed + i, files, texts[i])
        real = SampleRecord(i, sample_id, seed + i, {"result": reference}, texts[i])
        plan.append(engine.Planned(record, [reference, image], None, real))  # outputs[-1]: the generated image
    engine.attach_inputs(plan, data)
    dataset = dataset_info(data, dataset_root)
    preprocessing = f"centre square crop, PIL bicubic antialiased resize to {size}x{size}, uint8"
    dataset["reference_preprocessing"] = preprocessing
    model_info = {"config": str(config_path), "config_sha256": file_hash(config_path), "checkpoint": str(model_path),
                  "checkpoint_sha256": file_hash(require_file(model_path, "model_path")), "tokenizer": str(vocab),
                  "tokenizer_sha256": file_hash(vocab)}
    if check_only:  # a real run finds a misfit when it loads the model, before the folder is touched
        check_pairing(config_path, model_path, "config_path", "model_path")
    key = {"config_sha256": model_info["config_sha256"], "checkpoint_sha256": model_info["checkpoint_sha256"],
           "tokenizer_sha256": model_info["tokenizer_sha256"], "sampler": sampler, "steps": ddim_steps,
           "eta": float(eta), "guidance_scale": float(scale), "seed": seed, "save_images_ratio": float(save_images_ratio),
           "dataset_selection": data.selection_params(), "device_type": dev.type, "dtype": dtype_name(dt), **speed}
    # 3. Output folder.
    folder = RunFolder(output_dir, "text2img", key, overwrite=overwrite)
    folder.prepare(plan, fingerprint=dataset["fingerprint"])
    if check_only:
        return engine.RunCheck.of(folder, plan, data)
    latent_shape = (cfg.unet.out_channels, cfg.image_size, cfg.image_size)
    sampling = {"sampler": sampler, "steps": ddim_steps, "eta": float(eta), "guidance_scale": float(scale),
                "unconditional_prompt": "", "batching": batching, "latent_shape": list(latent_shape),
                "image_size": [size, size], "saved_indices": sorted(saved)}
    manifest = engine.base_manifest(folder, parameters=parameters, model_info=model_info, dataset=dataset,
                                    sampling=sampling, seed=seed, device=dev, dtype=dtype_name(dt), plan=plan)
    # 4. Load the model if an image is unfinished, start the folder, sample.
    ldm_model = engine.start_run(folder, plan, manifest, lambda: load_task_model(
        "text2img", config_path, model_path, config_arg="config_path", ckpt_arg="model_path", device=dev, dtype=dt, vocab=vocab,
        channels_last=channels_last, compile_unet=compile_unet))
    if ldm_model is not None:
        uc_one = text_condition(ldm_model, [""], autocast=dt)

    def produce(batch: list[engine.Planned], save, done) -> None:
        c = text_condition(ldm_model, [p.record.caption for p in batch], autocast=dt, per_image=per_image)
        uc = uc_one.expand(len(batch), *uc_one.shape[1:])
        z = sample_batch(ldm_model, seeds=[p.record.seed for p in batch], shape=latent_shape,
                         cond={"context": c}, uncond=None if scale == 1 else {"context": uc},
                         guidance_scale=float(scale), sampler=sampler, steps=ddim_steps, eta=eta, autocast=dt,
                         per_image=per_image)
        for p, image in zip(batch, decode_images(ldm_model, z, autocast=dt, per_image=per_image), strict=True):
            real = center_square(load_image(data.paths(p.record.index)["image"]), size)
            save(p.record.files["reference"], real)
            save(p.outputs[-1], image)
            done(p)

    manifest["timings"].update(engine.generate(folder, plan, produce, batch_size=batch_size, progress=progress,
                                               desc="text-to-image", write_workers=write_workers))
    if not engine.measured_here():  # sharded under torchrun: rank 0 measures afterwards, single-process
        return None
    # 5. Measure: CLIP per sample (generated and real), FID/KID/PR of generated vs real.
    start = time.perf_counter()
    models = measure.MetricModels(dev, metric_weights, clip_model=clip_model, clip_pretrained=clip_pretrained)
    clip_net = models.get("clip") if clip else None
    unavailable = {c: models.reasons["clip"] for c in CLIP_COLUMNS} if clip and clip_net is None else {}
    protocols = {c: f"{clip_net.protocol},{c}" for c in CLIP_COLUMNS} if clip_net is not None else {}
    image_of = {p.record.index: p.outputs[-1] for p in plan}  # includes the unsaved (scratch) images

    def clip_of(path_of):
        def compute(record: SampleRecord):
            if clip_net is None:
                return {}, {}
            from ldm_lab.metrics.clip_score import clip_scores

            scores = clip_scores(clip_net, [read_png(folder.root, path_of(record))], [record.caption])
            return {c: float(v[0]) for c, v in scores.items()}, {}

        return compute

    columns = CLIP_COLUMNS if clip else []
    model_rows, model_summary = measure.per_sample_metrics(
        [p.record for p in plan], clip_of(lambda r: image_of[r.index]), columns, protocols=protocols,
        unavailable=unavailable, progress=progress, desc="metrics (generated)")
    real_rows, real_summary = measure.per_sample_metrics(
        [p.baseline for p in plan], clip_of(lambda r: r.files["result"]), columns, protocols=protocols,
        unavailable=unavailable, progress=progress, desc="metrics (real images)")
    if not clip:
        model_summary, real_summary = measure.disabled(CLIP_COLUMNS, "clip"), measure.disabled(CLIP_COLUMNS, "clip")
    real_key = measure.reference_key(dataset["fingerprint"], preprocessing)
    first_of = {}  # one reference per dataset image (caption_policy "all" repeats images)
    for p in plan:
        first_of.setdefault(data.paths(p.record.index)["image"], folder.path(p.record.files["reference"]))
    fake = [folder.path(image_of[p.record.index]) for p in plan]
    note = f"real = the {len(first_of)} distinct dataset images, {preprocessing}"
    model_summary.update(measure.distribution_results(models, fake, list(first_of.values()), real_key=real_key,
                                                      note=note) if fid else
                         measure.disabled(["fid", "kid", "precision", "recall"], "fid"))
    shutil.rmtree(folder.path(SCRATCH), ignore_errors=True)
    manifest["timings"]["metrics_seconds"] = round(time.perf_counter() - start, 3)
    # 6. Result files.
    method = f"LDM text-to-image, {sampler} {ddim_steps} steps, guidance {scale}; baseline: the real images"
    result = engine.finish(folder, manifest, plan, method=method, columns=columns,
                           model=(model_rows, model_summary), baseline=(real_rows, real_summary))
    names = {i: data.paths(i)["image"].name for i in range(len(data))}
    settings = {"dataset_root": str(dataset_root), "config_path": str(config_path), "model_path": str(model_path),
                "save_images_ratio": save_images_ratio, "ddim_steps": ddim_steps, "scale": scale, "sampler": sampler}
    legacy.write_text2img(folder, model_summary, real_summary, result.samples, settings, names)
    return result
