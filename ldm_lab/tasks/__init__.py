"""Task runners: sample with an LDM checkpoint over a dataset and measure, resumably (issue 5).

    run_inpainting(data_dir=..., output_dir=..., config=..., model=...)
    run_superres(dataset_path=..., output_dir=..., config=..., checkpoint=..., scale=4)
    run_text2img(dataset_root=..., output_dir=..., config_path=..., model_path=...)

Argument names follow the older evaluation scripts; every default lives in the runner's signature and
points at the embedded demo (`ldm-lab prepare demo`, the trained checkpoints in `models/demo/`). Each
returns a `ldm_lab.results.RunResult`; outputs are described in design §4 and `ldm_lab.results`.
In a sharded session (`ldm_lab.distributed`, under torchrun) a runner samples its rank's shard and
returns None; the metrics are computed afterwards by one process from the PNGs.
"""

from ldm_lab.tasks.inpainting import run_inpainting
from ldm_lab.tasks.superres import run_superres
from ldm_lab.tasks.text2img import run_text2img

TASKS = {"inpainting": run_inpainting, "superres": run_superres, "text2img": run_text2img}

__all__ = ["TASKS", "run_inpainting", "run_superres", "run_text2img"]
