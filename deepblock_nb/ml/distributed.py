"""Training on several processes: the torch.distributed process group as the trainer uses it.

``torchrun`` starts one process per device (``--nproc_per_node=N``, and on several
machines ``--nnodes --rdzv-backend --rdzv-endpoint``) and tells each its place in
the environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``. :func:`setup` joins the group from there (NCCL on CUDA, one
device per process: ``cuda:LOCAL_RANK``; Gloo on the CPU) and the trainer then:

- shards each epoch's tiles across the ranks (:func:`shard`: the trainer's own
  seeded permutation of the epoch, the same on every rank and new each epoch, as
  ``DistributedSampler.set_epoch`` gives; every rank gets as many tiles);
- synchronises batch norm across ranks on CUDA (:func:`sync_batch_norm`); the
  CPU/Gloo backend has no SyncBatchNorm, so each rank keeps its own batch
  statistics there (DDP copies rank 0's running statistics to all at each step);
- agrees on a stop at the same step on every rank (:class:`StopSignal`);
- scores on rank 0 while the others wait, and shares the score
  (:func:`broadcast_object`) so early stopping decides the same everywhere;
- writes checkpoints, history and the run record on rank 0 only (:func:`is_main`).

Without a process group every helper is the single-process case: rank 0 of 1.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch import nn

from deepblock_nb.errors import ModelError

__all__ = [
    "STOP_FILE",
    "Ranks",
    "StopSignal",
    "barrier",
    "broadcast_object",
    "cleanup",
    "env_ranks",
    "is_main",
    "lr_scale",
    "mean_over_ranks",
    "rank",
    "setup",
    "shard",
    "sync_batch_norm",
    "world_size",
    "wrap",
]

#: a file in the run folder that asks a multi-process run to stop (``touch`` it)
STOP_FILE = "STOP"
#: how long a rank waits for the others (rank 0 scoring the held-out tiles, say)
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes, from torchrun's environment."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_ranks(environ: dict[str, str] | None = None) -> Ranks | None:
    """The ranks torchrun set in the environment, or None outside torchrun (or a
    world of one process, which trains as without torchrun).

    Raises:
        ModelError: the variables are there but not whole numbers.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        ranks = Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
    except ValueError as exc:
        raise ModelError(f"torchrun's RANK / WORLD_SIZE / LOCAL_RANK are not whole numbers: {exc}") from exc
    return ranks if ranks.world_size > 1 else None


def setup(device: str | torch.device, ranks: Ranks) -> torch.device:
    """Join the process group; returns this rank's device.

    CUDA (``"auto"`` with a GPU, ``"cuda"``): ``cuda:LOCAL_RANK`` and the NCCL
    backend. CPU: Gloo. Apple MPS has no distributed backend.

    Raises:
        ModelError: MPS, or fewer visible GPUs than processes on this machine.
    """
    from deepblock_nb.ml.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "mps":
        raise ModelError(
            "training on several processes needs CUDA or the CPU; MPS has no backend (device='cpu')"
        )
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if ranks.local_rank >= count:
            raise ModelError(
                f"rank {ranks.rank} wants GPU {ranks.local_rank} but this machine shows {count}; "
                f"start at most {count} processes per node (--nproc_per_node)"
            )
        dev = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(
            backend, rank=ranks.rank, world_size=ranks.world_size, timeout=TIMEOUT, **kwargs
        )
    return dev


def cleanup() -> None:
    """Leave the process group (a no-op without one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes the run, its history and checkpoints."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_object(value: Any, src: int = 0) -> Any:
    """``value`` of rank ``src`` on every rank (picklable values)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _any(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on one of them (a collective)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class StopSignal:
    """A stop every rank agrees on.

    ``local`` is this process's own request (``job.should_stop``); rank 0 also
    reads ``stop_file`` (a file another process writes to stop the run).
    :meth:`poll` is a collective: every rank calls it at the same point of the
    loop (once per step), and from the first poll that sees a request on any
    rank, all of them stop at that same step. :meth:`local_request` reads this
    rank's request without talking to the others (rank 0 scoring alone).
    """

    def __init__(self, local: Callable[[], bool], stop_file: Path | None, device: torch.device) -> None:
        self.local = local
        self.stop_file = stop_file if is_main() and world_size() > 1 else None
        self.device = device
        self.agreed = False

    def local_request(self) -> bool:
        return self.agreed or self.local() or (self.stop_file is not None and self.stop_file.exists())

    def poll(self) -> bool:
        if not self.agreed:
            flag = self.local_request()
            self.agreed = _any(flag, self.device) if world_size() > 1 else flag
        return self.agreed


def shard(order: npt.NDArray[np.int64], rank: int, world: int) -> npt.NDArray[np.int64]:
    """This rank's part of an epoch's sample order: every ``world``-th index from
    ``rank`` on, the order first padded from its start to a multiple of ``world``
    (as ``DistributedSampler(drop_last=False)``), so every rank takes as many
    steps. ``order`` must be the same on every rank (the trainer seeds it by epoch)."""
    if world <= 1 or len(order) == 0:
        return order
    pad = (-len(order)) % world
    padded = np.concatenate([order, np.resize(order, pad)]) if pad else order
    return padded[rank::world]


def lr_scale(world: int) -> float:
    """Learning-rate factor for ``world`` processes, each with the batch given:
    the square root of the effective batch's growth. The trainer's optimiser is
    AdamW, for which square-root scaling keeps the update noise of the
    single-process recipe; linear scaling is the rule for plain SGD, and with
    AdamW makes the steps too large as the processes grow (8 x a preset's
    from-scratch rate on 8 GPUs)."""
    return float(max(1, world)) ** 0.5


def sync_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the whole effective batch on CUDA (SyncBatchNorm); on the
    CPU the module is returned as it is (Gloo has no SyncBatchNorm)."""
    if world_size() > 1 and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel (its forward averages gradients across
    ranks); the module itself without a process group.

    ``find_unused_parameters``: a detector's heads may not all take part in every
    loss (a batch without boxes of a kind, a custom module), which plain DDP
    refuses.
    """
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of ``value`` over the ranks (a collective; ``value`` itself alone)."""
    if world_size() == 1:
        return value
    t = torch.tensor(
        [float(value)], dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device
    )
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / world_size()
