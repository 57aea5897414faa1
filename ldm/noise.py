"""Per-image seeded noise, so image k is the same at any batch size (as EDM's ``StackedRandomGenerator``).

Every image has an integer seed and its own CPU ``torch.Generator``; its initial latent and its DDIM-eta
noise are drawn on the CPU in float32 and then moved to the target device and dtype.
"""

import re
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

_MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed accepts 0 .. 2**64 - 1


def _check_seed(seed, name: str = "seeds") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"`{name}` must hold ints in [0, 2**64 - 1], got {seed!r}")
    return seed


def make_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One seeded CPU ``torch.Generator`` per image (per-image seeding as in EDM ``generate.py``)."""
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError(f"`seeds` must be a non-empty sequence of ints, got {seeds!r}")
    return [torch.Generator(device="cpu").manual_seed(_check_seed(s)) for s in seeds]


def randn_per_image(
    generators: Sequence[torch.Generator], shape: tuple[int, ...], *, device=None, dtype=torch.float32
) -> Tensor:
    """Standard normal noise [B, *shape]; row b is drawn from ``generators[b]`` on the CPU, then moved.

    Always drawn in float32, so that a seed gives the same latent whatever ``dtype`` is asked for.
    """
    if len(generators) == 0:
        raise ValueError("`generators` must hold one generator per image, got none")
    if any(g.device.type != "cpu" for g in generators):
        raise ValueError(
            f"`generators` must be CPU generators, got devices {[str(g.device) for g in generators]}"
        )
    shape = tuple(shape)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(f"`shape` must be a tuple of positive ints (per image, no batch), got {shape}")
    noise = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
    return noise.to(device=device, dtype=dtype)


def per_image_noise_sampler(generators: Sequence[torch.Generator]) -> Callable[[Tensor], Tensor]:
    """A ``noise_sampler(x)`` for ``ddim_sample``: noise like x, image b from ``generators[b]``."""
    generators = list(generators)

    def noise_sampler(x: Tensor) -> Tensor:
        if x.shape[0] != len(generators):
            raise ValueError(
                f"batch of {x.shape[0]} images but {len(generators)} generators; need one per image"
            )
        return randn_per_image(generators, tuple(x.shape[1:]), device=x.device, dtype=x.dtype)

    return noise_sampler


def parse_seeds(spec: str | int | Sequence[int], n: int | None = None) -> list[int]:
    """Seeds from ``"0-63"``, ``"1,5,7"``, ``"0-3,10"``, a list, or a base seed (EDM ``parse_int_list``).

    An int, or a string holding one int, is a base seed: ``base + i`` for ``i < n`` (n defaults to 1).
    Explicit lists and ranges must hold ``n`` seeds when ``n`` is given. Seeds must be distinct and
    non-negative, since output files are named after them.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"`n` must be a positive int or None, got {n!r}")
    if isinstance(spec, str) and re.fullmatch(r"\s*\d+\s*", spec):
        spec = int(spec)
    if isinstance(spec, int) and not isinstance(spec, bool):
        seeds = [_check_seed(spec, "spec") + i for i in range(1 if n is None else n)]
    elif isinstance(spec, str):
        seeds = []
        for token in spec.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", token)
            if m is None:
                raise ValueError(f"`spec` {spec!r}: cannot parse {token!r}; use e.g. '0-63', '1,5,7' or '42'")
            lo, hi = int(m[1]), int(m[2] or m[1])
            if hi < lo:
                raise ValueError(f"`spec` {spec!r}: range {token.strip()!r} is descending")
            seeds.extend(range(lo, hi + 1))
    elif isinstance(spec, Sequence) and not isinstance(spec, bytes):
        seeds = list(spec)
    else:
        raise ValueError(f"`spec` must be a str, an int or a sequence of ints, got {spec!r}")
    if not seeds:
        raise ValueError(f"`spec` {spec!r} holds no seeds")
    seeds = [_check_seed(s, "spec") for s in seeds]
    if len(set(seeds)) != len(seeds):
        dupes = sorted(s for s, count in Counter(seeds).items() if count > 1)
        raise ValueError(f"`spec` {spec!r} repeats seeds {dupes}; each image needs its own seed")
    if n is not None and len(seeds) != n:
        raise ValueError(f"`spec` {spec!r} gives {len(seeds)} seeds but `n` = {n}")
    return seeds
