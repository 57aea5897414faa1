"""Sharded sampling under `torchrun` (torch.distributed): image i is sampled by rank i mod world size (design §7).

    torchrun --nproc_per_node=K -m ldm_lab text2img ...      # one node, K processes (GPUs)
    torchrun --nnodes=N --node_rank=R --rdzv_endpoint=HOST:PORT --nproc_per_node=K -m ldm_lab text2img ...

No cluster code of our own: torchrun starts the processes and sets WORLD_SIZE / RANK / LOCAL_RANK; `init`
reads them and joins the process group (nccl on CUDA, gloo on CPU), and each rank uses the GPU
`cuda:LOCAL_RANK`. Every image has its own seed and is written atomically, so the union of the ranks'
PNGs is byte-identical to a single-process run and a rerun resumes per image (a rank that died leaves the
others' images in place; only the missing ones are sampled again).

The runners consult `current()`: in a sharded session (world size > 1) they sample their shard, record
the session in run.json (rank 0 only writes run.json), meet at a collective and return None without
measuring. Metrics are then computed once, single-process, from the PNGs on disk: the CLI's rank 0 leaves
the process group and executes the task notebook on the finished folder (its runner resumes with nothing
to sample, measures and writes metrics.json, per_sample.csv, report.ipynb and report.html); from Python,
call `shutdown()` on rank 0 and then the runner again. The notebooks themselves are always single-process.
The output folder must be on a filesystem that every rank sees (multi-node: a shared one).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

# A rank whose shard is done waits at the final collective for the slowest rank, which can be hours when a
# rerun completes one rank's missing images; torch's default (30 min, then the run fails) is too short.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=72)
# Test hook (the killed-rank test): "RANK:N" makes rank RANK raise after writing its N-th image.
FAIL_ENV = "LDM_LAB_TEST_FAIL_RANK_AFTER"


@dataclass(frozen=True)
class Shard:
    """This process's place in the run: rank `rank` of `world_size` samples the indices ≡ rank (mod world_size)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank


_current = Shard()


def current() -> Shard:
    """The shard of this process (a single-process run unless `init` joined a process group)."""
    return _current


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another torch.distributed launcher) started this process."""
    return all(name in os.environ for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


def _env_int(name: str) -> int:
    value = os.environ[name]
    if not value.isdigit():
        raise ValueError(f"environment variable {name} must be a non-negative integer, got {value!r}")
    return int(value)


def init(device: str = "auto") -> Shard:
    """Join the torchrun process group (a no-op outside torchrun) and return this process's shard.

    `device` is the runner option: with CUDA ("auto"/"cuda") the rank uses `cuda:LOCAL_RANK` and nccl,
    on the CPU gloo (see `device_for`).
    """
    global _current
    if not launched_by_torchrun():
        return _current
    world, rank, local = _env_int("WORLD_SIZE"), _env_int("RANK"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    cuda = device_for(device, local).startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    if world > 1:
        import torch.distributed as dist

        if cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            kwargs = {"device_id": torch.device("cuda", local)} if cuda else {}
            dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT, **kwargs)
    _current = Shard(rank, world, local, backend if world > 1 else None)
    _install_fail_hook()
    return _current


def device_for(device: str, local_rank: int) -> str:
    """The device option of one rank: "auto"/"cuda" -> cuda:LOCAL_RANK when CUDA exists; "cpu" as given."""
    device = str(device).strip()
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if device in ("auto", "cuda"):
        return f"cuda:{local_rank}"
    raise ValueError(f"`device` {device!r} in a torchrun run: use 'auto', 'cuda' (each rank takes "
                     f"cuda:LOCAL_RANK) or 'cpu'")


def gather(obj) -> list:
    """`obj` of every rank, in rank order (a collective: it also waits for every rank, like a barrier)."""
    if not _current.sharded:
        return [obj]
    import torch.distributed as dist

    out = [None] * _current.world_size
    dist.all_gather_object(out, obj)
    return out


def shutdown() -> None:
    """Leave the process group; afterwards this process is single-process again (e.g. rank 0 measuring)."""
    global _current
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _current = Shard()


def _install_fail_hook() -> None:
    spec = os.environ.get(FAIL_ENV)
    if not spec:
        return
    rank, after = (int(v) for v in spec.split(":"))
    if rank != _current.rank:
        return
    from ldm_lab.tasks import run_dir

    written = []

    def hook(index: int) -> None:
        written.append(index)
        if len(written) >= after:
            raise RuntimeError(f"{FAIL_ENV}: rank {rank} stops after {after} image(s) (test hook)")

    run_dir.after_image_hook = hook
