"""Inference speed options that leave the computation as it is: channels_last memory format, torch.compile.

    model = ldm.optimize(ldm.load(cfg, ckpt, device="cuda", dtype=torch.bfloat16), channels_last=True,
                         compile_unet=True)

channels_last stores the convolution weights of the UNet and the first-stage autoencoder as NHWC, which
cuDNN's tensor-core kernels prefer in fp16/bf16; activations follow the weights' layout. `compile_unet`
compiles the UNet in place (`nn.Module.compile`, so parameter names and `state_dict()` are unchanged);
the first call of each new input shape pays the compilation. Both change float rounding only: outputs
agree with the eager, contiguous model to float tolerance, not bit for bit.
"""

from __future__ import annotations

import torch

from ldm.diffusion import LatentDiffusion

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def optimize(model: LatentDiffusion, *, channels_last: bool = False, compile_unet: bool = False,
             compile_mode: str = "default") -> LatentDiffusion:
    """Apply the speed options to `model` in place and record them in `model.info["speed"]`."""
    if not isinstance(model, LatentDiffusion):
        raise TypeError(f"`model` must be a LatentDiffusion, got {type(model).__name__}")
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"`compile_mode` must be one of {list(COMPILE_MODES)}, got {compile_mode!r}")
    if channels_last:
        for net in (model.unet, model.first_stage_model):
            net.to(memory_format=torch.channels_last)
    if compile_unet:
        model.unet.compile(mode=None if compile_mode == "default" else compile_mode)
    model.info["speed"] = {"channels_last": bool(channels_last),
                           "compile_unet": compile_mode if compile_unet else None}
    return model
