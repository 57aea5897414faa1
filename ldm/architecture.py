"""The architecture a state_dict describes, read from tensor names and shapes alone.

When a checkpoint does not fit a config, a list of a hundred missing keys hides the reason. These facts
state it: `UNet input channels: config 7, checkpoint 6` (an inpainting config given a super-resolution
checkpoint). Each fact is read the same way from the config's model (built on the meta device) and from
the checkpoint's tensors, so no weight needs to be loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Shapes = Mapping[str, tuple[int, ...]]
UNET = "model.diffusion_model."


def _dim(key: str, dim: int) -> Callable[[Shapes], int | None]:
    def read(shapes: Shapes) -> int | None:
        shape = shapes.get(key)
        return shape[dim] if shape is not None and len(shape) > dim else None
    return read


def _unet(shapes: Shapes) -> bool:
    return any(k.startswith(UNET) for k in shapes)


def _unet_blocks(shapes: Shapes) -> int | None:
    found = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(UNET) + r"input_blocks\.(\d+)\.", k))}
    return len(found) or None


def _attention_layers(shapes: Shapes) -> int | None:
    """Attention modules of the UNet (self- and cross-attention), each counted once by its name."""
    if not _unet(shapes):
        return None
    return len({re.sub(r"\.(qkv|to_q|to_k|to_v)\.(weight|bias)$", "", k) for k in shapes
                if k.startswith(UNET) and re.search(r"\.(qkv|to_q|to_k|to_v)\.(weight|bias)$", k)})


def _cross_attention(shapes: Shapes) -> int | str | None:
    """Width of the cross-attention context (the text encoder's output); "none" for a UNet without it."""
    if not _unet(shapes):
        return None
    for key, shape in shapes.items():
        if key.startswith(UNET) and ".attn2.to_" in key and key.endswith(".weight") and len(shape) == 2 \
                and not key.endswith("to_out.0.weight") and ".to_q." not in key:
            return shape[1]
    return "none"


def _first_stage_kind(shapes: Shapes) -> str | None:
    """"VQ" (quant_conv keeps the latent width) or "KL" (it doubles it: mean and log-variance)."""
    quant, post = shapes.get("first_stage_model.quant_conv.weight"), shapes.get("first_stage_model.post_quant_conv.weight")
    if quant is None or post is None:
        return None
    return "VQ" if quant[0] == post[1] else "KL"


def _text_encoder(shapes: Shapes) -> str:
    return "BERT" if any(k.startswith("cond_stage_model.transformer.") for k in shapes) else "none"


# Each fact reads a value from names and shapes, or None when it cannot tell (then it is not compared), so a
# single missing tensor never reads as a different architecture.
FACTS: tuple[tuple[str, Callable[[Shapes], object]], ...] = (
    ("UNet input channels", _dim(UNET + "input_blocks.0.0.weight", 1)),
    ("UNet output channels", _dim(UNET + "out.2.weight", 0)),
    ("UNet model channels", _dim(UNET + "input_blocks.0.0.weight", 0)),
    ("UNet input blocks", _unet_blocks),
    ("UNet attention layers", _attention_layers),
    ("UNet cross-attention context width", _cross_attention),
    ("first stage", _first_stage_kind),
    ("first-stage latent channels", _dim("first_stage_model.post_quant_conv.weight", 1)),
    ("first-stage codebook size", _dim("first_stage_model.quantize.embedding.weight", 0)),
    ("first-stage encoder width", _dim("first_stage_model.encoder.conv_in.weight", 0)),
    ("text encoder", _text_encoder),
    ("text encoder vocabulary", _dim("cond_stage_model.transformer.token_emb.weight", 0)),
    ("text encoder width", _dim("cond_stage_model.transformer.token_emb.weight", 1)),
)


def differences(config: Shapes, checkpoint: Shapes) -> list[str]:
    """`"<fact>: config A, checkpoint B"` for every architecture fact that both sides tell and that differs."""
    out = []
    for label, read in FACTS:
        a, b = read(config), read(checkpoint)
        if a is not None and b is not None and a != b:
            out.append(f"{label}: config {a}, checkpoint {b}")
    return out
