"""Device and dtype options of the task runners, parsed once (STYLE 6): "auto|cpu|cuda[:N]", "fp32|fp16|bf16".

Models are loaded in the parsed dtype; fp16/bf16 need CUDA (on the CPU they would be slow and are not
what the reference models were evaluated with), so asking for them on a CPU device is an error rather
than a silent fallback to float32.
"""

from __future__ import annotations

import re

import torch

DEVICES = ("auto", "cpu", "cuda")
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` -> cuda when available, else cpu; `"cpu"`, `"cuda"`, `"cuda:N"` as given (CUDA must exist)."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device.strip()):
        raise ValueError(f"`device` must be one of {list(DEVICES)} (or 'cuda:N'), got {device!r}")
    device = device.strip()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parsed = torch.device(device)
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`device` {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"`device` {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return parsed


def parse_dtype(dtype: str | torch.dtype = "fp32", device: torch.device | None = None) -> torch.dtype:
    """`"fp32"|"fp16"|"bf16"` -> torch dtype; half precisions only on a CUDA `device`."""
    if isinstance(dtype, torch.dtype):
        names = {v: k for k, v in DTYPES.items()}
        if dtype not in names:
            raise ValueError(f"`dtype` must be one of {list(DTYPES)}, got {dtype}")
        dtype = names[dtype]
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {list(DTYPES)}, got {dtype!r}")
    if dtype != "fp32" and device is not None and device.type != "cuda":
        raise ValueError(f"`dtype` {dtype!r} needs a CUDA device (got device {str(device)!r}); use 'fp32' on the CPU")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """torch dtype -> its option string ("fp32", "fp16", "bf16")."""
    return {v: k for k, v in DTYPES.items()}[dtype]


def describe_device(device: torch.device) -> dict:
    """What run.json records about the device: type, name and (CUDA) capability."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return {"type": "cuda", "index": index, "name": props.name,
                "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
    import platform

    return {"type": device.type, "name": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads()}
